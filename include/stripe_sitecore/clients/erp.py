"""A generic ERP order intake over HTTP: POST the order with an ``Idempotency-Key`` header.

The key makes retries safe: an ERP that saw the order before answers "duplicate" with the same
ERP order id instead of creating a second one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from stripe_sitecore.clients.http import retrying_session


class ERPError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(f"ERP answered {status}: {message}")


@dataclass(frozen=True)
class ERPReceipt:
    erp_order_id: str
    duplicate: bool


@dataclass(frozen=True)
class ERPSettings:
    base_url: str
    token: str = field(repr=False)
    orders_path: str = "/orders"
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_retries: int = 5
    backoff_factor: float = 0.5

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"ERP host {self.base_url!r} must be an http(s) URL")
        if not self.orders_path.startswith("/"):
            raise ValueError(f"orders_path {self.orders_path!r} must start with /")


class ERPClient:
    def __init__(self, settings: ERPSettings, session: requests.Session | None = None):
        self.settings = settings
        self.session = retrying_session(
            max_retries=settings.max_retries,
            backoff_factor=settings.backoff_factor,
            session=session,
        )

    @property
    def _orders_url(self) -> str:
        return self.settings.base_url.rstrip("/") + self.settings.orders_path

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.token}"}

    def submit_order(self, payload: dict[str, Any], *, idempotency_key: str) -> ERPReceipt:
        response = self.session.post(
            self._orders_url,
            json=payload,
            headers={**self._headers(), "Idempotency-Key": idempotency_key},
            timeout=(self.settings.connect_timeout, self.settings.read_timeout),
        )
        if response.status_code not in (200, 201):
            raise ERPError(response.status_code, response.text[:500])
        body = response.json()
        erp_order_id = body.get("erp_order_id") if isinstance(body, dict) else None
        if not erp_order_id:
            raise ERPError(response.status_code, f"no erp_order_id in answer {body!r:.200}")
        return ERPReceipt(erp_order_id=erp_order_id, duplicate=body.get("status") == "duplicate")

    def check_credentials(self) -> None:
        response = self.session.get(
            self._orders_url,
            headers=self._headers(),
            timeout=(self.settings.connect_timeout, self.settings.read_timeout),
        )
        if response.status_code >= 400:
            raise ERPError(response.status_code, response.text[:200])
