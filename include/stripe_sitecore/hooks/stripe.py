"""Airflow hook for Stripe, reading the ``stripe_default`` connection of DESIGN.md."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from stripe_sitecore.clients.stripe_gateway import PINNED_API_VERSION, StripeGateway, StripeSettings
from stripe_sitecore.hooks.connection import base_url


class StripeHook(BaseHook):
    """``password`` = secret key; ``host`` = API base URL (empty for Stripe itself).

    Extra: ``api_version``, ``max_network_retries``, ``connect_timeout``, ``read_timeout``,
    ``webhook_secret``.
    """

    conn_name_attr = "stripe_conn_id"
    default_conn_name = "stripe_default"
    conn_type = "generic"
    hook_name = "Stripe"

    def __init__(self, stripe_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.stripe_conn_id = stripe_conn_id
        self._gateway: StripeGateway | None = None

    def settings(self) -> StripeSettings:
        conn = self.get_connection(self.stripe_conn_id)
        extra = conn.extra_dejson
        try:
            return StripeSettings(
                api_key=conn.password or "",
                api_base=base_url(conn) or None,
                api_version=extra.get("api_version", PINNED_API_VERSION),
                max_network_retries=int(extra.get("max_network_retries", 2)),
                connect_timeout=float(extra.get("connect_timeout", 10)),
                read_timeout=float(extra.get("read_timeout", 30)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"connection {self.stripe_conn_id!r}: {exc}") from None

    def get_conn(self) -> StripeGateway:
        if self._gateway is None:
            self._gateway = StripeGateway(self.settings())
        return self._gateway

    def test_connection(self) -> tuple[bool, str]:
        import stripe

        try:
            self.get_conn().check_credentials()
        except stripe.AuthenticationError:
            return False, "Stripe refused the API key (check the connection password)"
        except stripe.APIConnectionError:
            return (
                False,
                f"Stripe API unreachable at {self.settings().api_base or 'api.stripe.com'}",
            )
        except (stripe.StripeError, ValueError) as exc:
            return False, f"Stripe check failed: {type(exc).__name__}: {exc}"
        return True, "Connected to Stripe"
