"""Airflow hook for Sitecore OrderCloud, reading the ``ordercloud_default`` connection."""

from __future__ import annotations

import dataclasses
from typing import Any

from airflow.sdk import BaseHook

from stripe_sitecore.backends.ordercloud.client import (
    DEFAULT_SCOPE,
    OrderCloudAuthError,
    OrderCloudClient,
    OrderCloudError,
    OrderCloudForbidden,
    OrderCloudSettings,
    OrderCloudUnavailable,
)
from stripe_sitecore.hooks.connection import base_url, extra_number, mask_secrets


class OrderCloudHook(BaseHook):
    """``host`` = API base URL; ``login``/``password`` = client id/secret.

    Extra: ``auth_url``, ``grant_type``, ``username``, ``user_password``, ``scope``,
    ``order_direction``, ``buyer_id``, ``webhook_hash_key``, ``connect_timeout``,
    ``read_timeout``, ``max_retries``, ``backoff_factor``.
    """

    conn_name_attr = "ordercloud_conn_id"
    default_conn_name = "ordercloud_default"
    conn_type = "http"
    hook_name = "Sitecore OrderCloud"

    def __init__(self, ordercloud_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.ordercloud_conn_id = ordercloud_conn_id
        self._client: OrderCloudClient | None = None
        self._webhook_hash_key: str | None = None

    def settings(self) -> OrderCloudSettings:
        conn = self.get_connection(self.ordercloud_conn_id)
        extra = conn.extra_dejson
        self._webhook_hash_key = extra.get("webhook_hash_key") or None
        mask_secrets(conn.password, extra.get("user_password"), self._webhook_hash_key)
        try:
            return OrderCloudSettings(
                base_url=base_url(conn),
                client_id=conn.login or "",
                client_secret=conn.password or "",
                auth_url=extra.get("auth_url"),
                grant_type=extra.get("grant_type", "client_credentials"),
                username=extra.get("username"),
                user_password=extra.get("user_password"),
                scope=extra.get("scope", DEFAULT_SCOPE),
                order_direction=extra.get("order_direction", "Incoming"),
                buyer_id=extra.get("buyer_id") or None,
                connect_timeout=extra_number(extra, "connect_timeout", 10.0),
                read_timeout=extra_number(extra, "read_timeout", 30.0),
                max_retries=extra_number(extra, "max_retries", 5, int),
                backoff_factor=extra_number(extra, "backoff_factor", 0.5),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"connection {self.ordercloud_conn_id!r}: {exc}") from None

    def get_conn(self) -> OrderCloudClient:
        if self._client is None:
            # Access tokens are fetched at run time: Airflow cannot know to mask them.
            self._client = OrderCloudClient(self.settings(), on_secret=mask_secrets)
        return self._client

    def webhook_hash_key(self) -> str | None:
        """The key OrderCloud signs webhook payloads with (``X-oc-hash``), masked in logs."""
        if self._webhook_hash_key is None:
            self.settings()
        return self._webhook_hash_key

    def test_connection(self) -> tuple[bool, str]:
        try:
            settings = self.settings()
            # The UI's Test button should answer within seconds, not after a full retry cycle.
            quick = dataclasses.replace(settings, max_retries=min(settings.max_retries, 1))
            OrderCloudClient(quick, on_secret=mask_secrets).check_credentials()
        except OrderCloudAuthError as exc:
            return False, f"OrderCloud refused the credentials: {exc}"
        except OrderCloudForbidden as exc:
            return False, f"OrderCloud API client lacks a role: {exc} (needs {exc.data})"
        except OrderCloudUnavailable as exc:
            if exc.status is None:
                return False, f"OrderCloud unreachable at {settings.base_url}: {exc}"
            return False, f"OrderCloud is failing: {exc}"
        except (OrderCloudError, ValueError) as exc:
            return False, f"OrderCloud check failed: {exc}"
        return True, "Connected to OrderCloud"


def backend_from_connection(conn_id: str = OrderCloudHook.default_conn_name):
    """The OrderCloud backend over the client of the ``ordercloud_default`` connection."""
    from stripe_sitecore.backends.ordercloud.backend import OrderCloudBackend

    return OrderCloudBackend(OrderCloudHook(conn_id).get_conn())
