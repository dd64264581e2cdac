"""Airflow hook for the ERP order intake, reading the ``erp_default`` connection."""

from __future__ import annotations

from typing import Any

import requests
from airflow.sdk import BaseHook

from stripe_sitecore.clients.erp import ERPClient, ERPError, ERPSettings
from stripe_sitecore.hooks.connection import base_url


class ErpHook(BaseHook):
    """``host`` = ERP base URL; ``password`` = bearer token. Extra: ``orders_path``, timeouts."""

    conn_name_attr = "erp_conn_id"
    default_conn_name = "erp_default"
    conn_type = "http"
    hook_name = "ERP order intake"

    def __init__(self, erp_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.erp_conn_id = erp_conn_id
        self._client: ERPClient | None = None

    def settings(self) -> ERPSettings:
        conn = self.get_connection(self.erp_conn_id)
        extra = conn.extra_dejson
        try:
            return ERPSettings(
                base_url=base_url(conn),
                token=conn.password or "",
                orders_path=extra.get("orders_path", "/orders"),
                connect_timeout=float(extra.get("connect_timeout", 10)),
                read_timeout=float(extra.get("read_timeout", 30)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"connection {self.erp_conn_id!r}: {exc}") from None

    def get_conn(self) -> ERPClient:
        if self._client is None:
            self._client = ERPClient(self.settings())
        return self._client

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.get_conn().check_credentials()
        except ERPError as exc:
            if exc.status in (401, 403):
                return False, "ERP refused the token (check the connection password)"
            return False, str(exc)
        except requests.ConnectionError:
            return False, f"ERP unreachable at {self.settings().base_url}"
        except (requests.RequestException, ValueError) as exc:
            return False, f"ERP check failed: {exc}"
        return True, "Connected to the ERP"
