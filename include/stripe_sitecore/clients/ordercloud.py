"""Sitecore OrderCloud REST client: OAuth2 tokens, retries, paging, typed filters and errors.

Plain ``requests``: usable without Airflow. Transient failures are retried by the shared
``retrying_session``; writes are safe to retry because the flows create with deterministic IDs
and treat 409 as "already done".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import requests

from stripe_sitecore.clients.http import retrying_session

DEFAULT_SCOPE = "OrderAdmin BuyerUserAdmin BuyerReader"
MAX_PAGE_SIZE = 100
# OrderCloud refuses page numbers past 30; beyond that, page by ``sortBy=ID&ID=>{lastID}``.
MAX_PAGE_NUMBER = 30
TOKEN_REFRESH_MARGIN_SECONDS = 60

# Money travels as JSON numbers; encode and decode them as Decimal so no float ever touches them.
_json_encoder = msgspec.json.Encoder(decimal_format="number")
_json_decoder = msgspec.json.Decoder(float_hook=Decimal)


class OrderCloudError(Exception):
    """An error answer from OrderCloud, with its ``{"Errors": [...]}`` parsed."""

    def __init__(self, status: int, method: str, path: str, errors: list[dict[str, Any]]):
        self.status = status
        self.errors = errors
        first = errors[0] if errors else {}
        self.error_code = first.get("ErrorCode")
        self.data = first.get("Data")
        message = first.get("Message") or "no error body"
        super().__init__(f"OrderCloud {method} {path} -> {status} {self.error_code}: {message}")


class OrderCloudAuthError(OrderCloudError):
    """Credentials refused (token endpoint 400/401, or 401 after a fresh token)."""


class OrderCloudForbidden(OrderCloudError):
    """The API client lacks a role; ``data`` lists the sufficient roles."""


class OrderCloudNotFound(OrderCloudError):
    pass


class OrderCloudAlreadyExists(OrderCloudError):
    """409 on create: an object with that ID exists, which for our deterministic IDs means done."""


_ERRORS_BY_STATUS = {
    401: OrderCloudAuthError,
    403: OrderCloudForbidden,
    404: OrderCloudNotFound,
    409: OrderCloudAlreadyExists,
}


def format_filter_value(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} in an OrderCloud filter")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Decimal | int):
        return str(value)
    return str(value)


@dataclass
class Filters:
    """OrderCloud list filters as query parameters; repeated fields mean AND.

    ``Filters().greater("LastUpdated", t0).less("LastUpdated", t1)`` gives
    ``LastUpdated=>t0&LastUpdated=<t1``. There is no ``>=`` in OrderCloud: ``not_less`` is ``!<``.
    """

    params: list[tuple[str, str]] = field(default_factory=list)

    def _add(self, name: str, op: str, value: Any) -> Filters:
        self.params.append((name, f"{op}{format_filter_value(value)}"))
        return self

    def equals(self, name: str, value: Any) -> Filters:
        return self._add(name, "", value)

    def greater(self, name: str, value: Any) -> Filters:
        return self._add(name, ">", value)

    def less(self, name: str, value: Any) -> Filters:
        return self._add(name, "<", value)

    def not_less(self, name: str, value: Any) -> Filters:
        return self._add(name, "!<", value)

    def not_equals(self, name: str, value: Any) -> Filters:
        return self._add(name, "!", value)

    def any_of(self, name: str, *values: Any) -> Filters:
        self.params.append((name, "|".join(format_filter_value(v) for v in values)))
        return self


@dataclass(frozen=True)
class OrderCloudSettings:
    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    auth_url: str | None = None
    grant_type: str = "client_credentials"
    username: str | None = None
    user_password: str | None = field(default=None, repr=False)
    scope: str = DEFAULT_SCOPE
    order_direction: str = "Incoming"
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_retries: int = 5
    backoff_factor: float = 0.5

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"OrderCloud host {self.base_url!r} must be an http(s) URL")
        if not self.client_id:
            raise ValueError("OrderCloud client id (connection login) is empty")
        if self.grant_type not in {"client_credentials", "password"}:
            raise ValueError(f"grant_type {self.grant_type!r}: use client_credentials or password")
        if self.grant_type == "password" and not (self.username and self.user_password):
            raise ValueError("grant_type password needs username and user_password in extra")
        if self.order_direction not in {"Incoming", "Outgoing", "All"}:
            raise ValueError(f"order_direction {self.order_direction!r} is not Incoming/Outgoing")

    @property
    def token_url(self) -> str:
        return self.auth_url or f"{self.base_url.rstrip('/')}/oauth/token"


class OrderCloudClient:
    def __init__(self, settings: OrderCloudSettings, session: requests.Session | None = None):
        self.settings = settings
        self.session = retrying_session(
            max_retries=settings.max_retries,
            backoff_factor=settings.backoff_factor,
            session=session,
        )
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = threading.Lock()

    # --- auth -------------------------------------------------------------------------
    def _fetch_token(self) -> None:
        s = self.settings
        form = {"grant_type": s.grant_type, "client_id": s.client_id, "scope": s.scope}
        if s.grant_type == "password":
            form.update(username=s.username, password=s.user_password)
        if s.client_secret:
            form["client_secret"] = s.client_secret
        response = self.session.post(
            s.token_url, data=form, timeout=(s.connect_timeout, s.read_timeout)
        )
        if response.status_code != 200:
            body = _json_or_none(response) or {}
            # Never echo the request: it carries the client secret.
            description = body.get("error_description") or body.get("error") or response.reason
            raise OrderCloudAuthError(
                response.status_code,
                "POST",
                "/oauth/token",
                [{"ErrorCode": body.get("error", "TokenRequestFailed"), "Message": description}],
            )
        body = response.json()
        self._token = body["access_token"]
        self._token_expires_at = time.monotonic() + float(body.get("expires_in", 600))

    def _bearer(self, *, force_refresh: bool = False) -> str:
        with self._token_lock:
            expiring = time.monotonic() >= self._token_expires_at - TOKEN_REFRESH_MARGIN_SECONDS
            if force_refresh or self._token is None or expiring:
                self._fetch_token()
            assert self._token is not None
            return self._token

    # --- requests ---------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        url = f"{self.settings.base_url.rstrip('/')}/v1{path}"
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        content_type = {} if json is None else {"Content-Type": "application/json"}
        response = None
        for attempt in range(2):
            token = self._bearer(force_refresh=attempt == 1)
            response = self.session.request(
                method,
                url,
                params=params,
                data=None if json is None else _json_encoder.encode(json),
                headers={"Authorization": f"Bearer {token}", **content_type},
                timeout=timeout,
            )
            # A 401 on a token we thought valid: revoked or expired early. Refresh once.
            if response.status_code != 401:
                break
        assert response is not None
        if response.status_code >= 400:
            body = _json_or_none(response) or {}
            errors = body.get("Errors") if isinstance(body, dict) else None
            error_class = _ERRORS_BY_STATUS.get(response.status_code, OrderCloudError)
            raise error_class(response.status_code, method, path, errors or [])
        if response.status_code == 204 or not response.content:
            return None
        return _json_decoder.decode(response.content)

    def iter_list(
        self, path: str, filters: Filters | None = None, *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, by page number up to 30, then by ID."""
        base = list(filters.params if filters else [])
        page = 1
        last_id: str | None = None
        while True:
            params = base + [("sortBy", "ID"), ("pageSize", str(page_size))]
            if page <= MAX_PAGE_NUMBER:
                params.append(("page", str(page)))
            else:
                params += [("ID", f">{last_id}"), ("page", "1")]
            body = self.request("GET", path, params=params)
            items = body.get("Items") or []
            yield from items
            meta = body.get("Meta") or {}
            if not items or len(items) < page_size:
                return
            if page <= MAX_PAGE_NUMBER and meta.get("TotalPages", 0) <= page:
                return
            last_id = items[-1]["ID"]
            page += 1

    # --- orders and payments ------------------------------------------------------------
    def list_orders(self, filters: Filters | None = None) -> Iterator[dict[str, Any]]:
        return self.iter_list(f"/orders/{self.settings.order_direction}", filters)

    def get_order(self, order_id: str) -> dict[str, Any]:
        return self.request("GET", f"/orders/{self.settings.order_direction}/{order_id}")

    def patch_order(self, order_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.request(
            "PATCH", f"/orders/{self.settings.order_direction}/{order_id}", json=patch
        )

    def create_payment(self, order_id: str, payment: dict[str, Any]) -> bool:
        """Create the payment; False if a payment with that ID already exists."""
        path = f"/orders/{self.settings.order_direction}/{order_id}/payments"
        try:
            self.request("POST", path, json=payment)
        except OrderCloudAlreadyExists:
            return False
        return True

    def create_payment_transaction(
        self, order_id: str, payment_id: str, transaction: dict[str, Any]
    ) -> bool:
        """Add a transaction to a payment; False if one with that ID already exists."""
        path = (
            f"/orders/{self.settings.order_direction}/{order_id}/payments/{payment_id}/transactions"
        )
        try:
            self.request("POST", path, json=transaction)
        except OrderCloudAlreadyExists:
            return False
        return True

    def list_payments(self, order_id: str) -> list[dict[str, Any]]:
        path = f"/orders/{self.settings.order_direction}/{order_id}/payments"
        return list(self.iter_list(path))

    def check_credentials(self) -> None:
        """A token plus one read that needs an order role."""
        self.request("GET", f"/orders/{self.settings.order_direction}", params={"pageSize": 1})


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
