"""Airflow hook for the ERP order intake, reading the ``erp_default`` connection."""

from __future__ import annotations

import dataclasses
from typing import Any

from airflow.sdk import BaseHook

from stripe_sitecore.clients.erp import ERPClient, ERPError, ERPSettings
from stripe_sitecore.hooks.connection import base_url, extra_number, mask_secrets


class ErpHook(BaseHook):
    """``host`` = ERP base URL; ``password`` = bearer token.

    Extra: ``orders_path``, ``contract_path`` (where the erp.v1 routes are, default ``/v1``),
    ``connect_timeout``, ``read_timeout``, ``max_retries``, ``backoff_factor``.
    """

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
        mask_secrets(conn.password)
        try:
            return ERPSettings(
                base_url=base_url(conn),
                token=conn.password or "",
                orders_path=extra.get("orders_path", "/orders"),
                contract_path=extra.get("contract_path", "/v1"),
                connect_timeout=extra_number(extra, "connect_timeout", 10.0),
                read_timeout=extra_number(extra, "read_timeout", 30.0),
                max_retries=extra_number(extra, "max_retries", 5, int),
                backoff_factor=extra_number(extra, "backoff_factor", 0.5),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"connection {self.erp_conn_id!r}: {exc}") from None

    def get_conn(self) -> ERPClient:
        if self._client is None:
            self._client = ERPClient(self.settings())
        return self._client

    def test_connection(self) -> tuple[bool, str]:
        try:
            settings = self.settings()
            # The UI's Test button should answer within seconds, not after a full retry cycle.
            quick = dataclasses.replace(settings, max_retries=min(settings.max_retries, 1))
            ERPClient(quick).check_credentials()
        except ERPError as exc:
            if exc.status in (401, 403):
                return False, "ERP refused the token (check the connection password)"
            if exc.status is None:
                return False, f"ERP unreachable at {settings.base_url}: {exc}"
            return False, str(exc)
        except ValueError as exc:
            return False, f"ERP check failed: {exc}"
        return True, "Connected to the ERP"
