"""A generic ERP order intake over HTTP: POST the order with an ``Idempotency-Key`` header.

The key makes retries safe: an ERP that saw the order before answers "duplicate" with the same
ERP order id instead of creating a second one. So the session retries POSTs too (connection
resets, timeouts, 429, 5xx), and a retry of a write that the ERP committed before the answer
was lost comes back as a duplicate, which is success.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from stripe_sitecore.clients.http import (
    RetryNotice,
    attempts_made,
    retrying_session,
    transport_failure,
)


class ERPError(Exception):
    """The ERP refused or failed; ``status`` is None when no answer came at all."""

    def __init__(self, status: int | None, message: str, *, attempts: int = 1):
        self.status = status
        self.attempts = attempts
        answer = "gave no answer" if status is None else f"answered {status}"
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"ERP {answer}: {message}{tries}")


class ERPUnavailable(ERPError, requests.RequestException):
    """5xx, 429 or no answer after every retry: a later task retry may succeed.

    Also a ``requests.RequestException``: callers that retry transport failures (as the flows
    do) keep treating these as retryable, as before they were wrapped.
    """


@dataclass(frozen=True)
class ERPReceipt:
    # None only when the ERP answered 409 (it has the order) without saying its number.
    erp_order_id: str | None
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
    backoff_jitter: float = 0.25

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"ERP host {self.base_url!r} must be an http(s) URL")
        if not self.orders_path.startswith("/"):
            raise ValueError(f"orders_path {self.orders_path!r} must start with /")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("connect_timeout and read_timeout must be > 0 seconds")
        if self.max_retries < 0 or self.backoff_factor < 0:
            raise ValueError("max_retries and backoff_factor must be >= 0")


class ERPClient:
    def __init__(
        self,
        settings: ERPSettings,
        session: requests.Session | None = None,
        *,
        on_retry: Callable[[RetryNotice], None] | None = None,
        sleep: Callable[[float], None] | None = None,
    ):
        self.settings = settings
        self.session = retrying_session(
            max_retries=settings.max_retries,
            backoff_factor=settings.backoff_factor,
            backoff_jitter=settings.backoff_jitter,
            session=session,
            on_retry=on_retry,
            sleep=sleep,
        )

    @property
    def _orders_url(self) -> str:
        return self.settings.base_url.rstrip("/") + self.settings.orders_path

    def _send(self, method: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.settings.token}", **kwargs.pop("headers", {})}
        try:
            response = self.session.request(
                method,
                self._orders_url,
                headers=headers,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                **kwargs,
            )
        except requests.RequestException as exc:
            reason, attempts = transport_failure(exc, self.settings.max_retries)
            raise ERPUnavailable(None, reason, attempts=attempts) from exc
        if response.status_code == 409 and method == "POST":
            return response  # "already there": the caller reads it as a duplicate
        if response.status_code >= 400:
            transient = response.status_code == 429 or response.status_code >= 500
            error_class = ERPUnavailable if transient else ERPError
            # The ERP's own error text; it never echoes the request's headers.
            raise error_class(
                response.status_code, response.text[:500], attempts=attempts_made(response)
            )
        return response

    def submit_order(self, payload: dict[str, Any], *, idempotency_key: str) -> ERPReceipt:
        """Send one order; ``duplicate`` when the ERP already had it (a retry, or a replay)."""
        response = self._send("POST", json=payload, headers={"Idempotency-Key": idempotency_key})
        if response.status_code == 409:
            # The ERP has this order already (a retry after a lost answer, or a replay): done.
            body = _json_or_none(response)
            number = body.get("erp_order_id") if isinstance(body, dict) else None
            return ERPReceipt(erp_order_id=number, duplicate=True)
        if response.status_code not in (200, 201):
            raise ERPError(response.status_code, f"unexpected answer {response.text[:200]!r}")
        body = response.json()
        erp_order_id = body.get("erp_order_id") if isinstance(body, dict) else None
        if not erp_order_id:
            raise ERPError(response.status_code, f"no erp_order_id in answer {body!r:.200}")
        return ERPReceipt(erp_order_id=erp_order_id, duplicate=body.get("status") == "duplicate")

    def check_credentials(self) -> None:
        self._send("GET")


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
