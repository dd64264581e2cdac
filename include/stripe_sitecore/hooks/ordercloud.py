"""Airflow hook for Sitecore OrderCloud, reading the ``ordercloud_default`` connection."""

from __future__ import annotations

from typing import Any

import requests
from airflow.sdk import BaseHook

from stripe_sitecore.clients.ordercloud import (
    DEFAULT_SCOPE,
    OrderCloudAuthError,
    OrderCloudClient,
    OrderCloudError,
    OrderCloudForbidden,
    OrderCloudSettings,
)
from stripe_sitecore.hooks.connection import base_url


class OrderCloudHook(BaseHook):
    """``host`` = API base URL; ``login``/``password`` = client id/secret.

    Extra: ``auth_url``, ``grant_type``, ``username``, ``user_password``, ``scope``,
    ``order_direction``, ``buyer_id``, ``connect_timeout``, ``read_timeout``.
    """

    conn_name_attr = "ordercloud_conn_id"
    default_conn_name = "ordercloud_default"
    conn_type = "http"
    hook_name = "Sitecore OrderCloud"

    def __init__(self, ordercloud_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.ordercloud_conn_id = ordercloud_conn_id
        self._client: OrderCloudClient | None = None

    def settings(self) -> OrderCloudSettings:
        conn = self.get_connection(self.ordercloud_conn_id)
        extra = conn.extra_dejson
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
                connect_timeout=float(extra.get("connect_timeout", 10)),
                read_timeout=float(extra.get("read_timeout", 30)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"connection {self.ordercloud_conn_id!r}: {exc}") from None

    def get_conn(self) -> OrderCloudClient:
        if self._client is None:
            self._client = OrderCloudClient(self.settings())
        return self._client

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.get_conn().check_credentials()
        except OrderCloudAuthError as exc:
            return False, f"OrderCloud refused the credentials: {exc}"
        except OrderCloudForbidden as exc:
            return False, f"OrderCloud API client lacks a role: {exc} (needs {exc.data})"
        except requests.ConnectionError:
            return False, f"OrderCloud unreachable at {self.settings().base_url}"
        except (OrderCloudError, requests.RequestException, ValueError) as exc:
            return False, f"OrderCloud check failed: {exc}"
        return True, "Connected to OrderCloud"
