"""Airflow hook for Stripe, reading the ``stripe_default`` connection (docs/architecture.md).

Building a client through the hook also makes the Stripe SDK's own logging safe
(``protect_stripe_logging``): at DEBUG the SDK logs every response body, and a PaymentIntent's
body holds its ``client_secret``, which lets anyone with a publishable key confirm the payment.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from airflow.sdk import BaseHook

from stripe_sitecore.clients.stripe_gateway import PINNED_API_VERSION, StripeGateway, StripeSettings
from stripe_sitecore.clients.stripe_logging import (  # noqa: F401  (re-exported for callers)
    REDACTED,
    STRIPE_LOGGER,
    protect_stripe_logging,
    redact_stripe_secrets,
)
from stripe_sitecore.hooks.connection import base_url, extra_number, mask_secrets


class StripeHook(BaseHook):
    """``password`` = secret key; ``host`` = API base URL (empty for Stripe itself).

    Extra: ``api_version``, ``max_network_retries``, ``connect_timeout``, ``read_timeout``,
    ``requests_per_second`` (default 80% of Stripe's limit for the key: 20 test, 80 live),
    ``search_requests_per_second`` (default 16), ``rate_limit_attempts``, ``webhook_secret``.
    """

    conn_name_attr = "stripe_conn_id"
    default_conn_name = "stripe_default"
    conn_type = "generic"
    hook_name = "Stripe"

    def __init__(self, stripe_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.stripe_conn_id = stripe_conn_id
        self._gateway: StripeGateway | None = None
        self._webhook_secret: str | None = None

    def settings(self) -> StripeSettings:
        protect_stripe_logging()
        conn = self.get_connection(self.stripe_conn_id)
        extra = conn.extra_dejson
        self._webhook_secret = extra.get("webhook_secret") or None
        mask_secrets(conn.password, self._webhook_secret)
        try:
            return StripeSettings(
                api_key=conn.password or "",
                api_base=base_url(conn) or None,
                api_version=extra.get("api_version", PINNED_API_VERSION),
                max_network_retries=extra_number(extra, "max_network_retries", 2, int),
                connect_timeout=extra_number(extra, "connect_timeout", 10.0),
                read_timeout=extra_number(extra, "read_timeout", 30.0),
                rate_limit_attempts=extra_number(extra, "rate_limit_attempts", 5, int),
                requests_per_second=extra_number(extra, "requests_per_second", None),
                search_requests_per_second=extra_number(extra, "search_requests_per_second", None),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"connection {self.stripe_conn_id!r}: {exc}") from None

    def get_conn(self) -> StripeGateway:
        if self._gateway is None:
            self._gateway = StripeGateway(self.settings())
        return self._gateway

    def webhook_secret(self) -> str | None:
        """The endpoint secret (``whsec_...``) that signs Stripe's webhooks, masked in logs."""
        if self._webhook_secret is None:
            self.settings()
        return self._webhook_secret

    def test_connection(self) -> tuple[bool, str]:
        import stripe

        try:
            # The UI's Test button should answer within seconds, not after a full retry cycle.
            settings = self.settings()
            gateway = StripeGateway(
                dataclasses.replace(
                    settings,
                    max_network_retries=min(settings.max_network_retries, 1),
                    rate_limit_attempts=min(settings.rate_limit_attempts, 2),
                )
            )
            gateway.check_credentials()
        except stripe.AuthenticationError:
            return False, "Stripe refused the API key (check the connection password)"
        except stripe.PermissionError:
            return False, "Stripe API key lacks a permission (a restricted key needs read access)"
        except stripe.APIConnectionError:
            return (
                False,
                f"Stripe API unreachable at {settings.api_base or 'api.stripe.com'}",
            )
        except (stripe.StripeError, ValueError) as exc:
            return False, f"Stripe check failed: {type(exc).__name__}: {exc}"
        return True, "Connected to Stripe"
