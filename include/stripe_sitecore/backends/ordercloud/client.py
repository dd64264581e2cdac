"""Sitecore OrderCloud REST client: OAuth2 tokens, retries, paging, typed filters and errors.

Plain ``requests``: usable without Airflow. Transient failures (connection errors, resets, read
timeouts, 429 and 5xx) are retried by the shared ``retrying_session``, honouring ``Retry-After``;
writes are safe to retry because the flows create with deterministic IDs and treat 409 as
"already done", and PATCH is idempotent. What is still failing when the retries run out is
raised as an ``OrderCloudError`` subclass, never as a bare transport exception.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import requests

from stripe_sitecore.backends.base import SitecoreAlreadyExists, SitecoreNotFound
from stripe_sitecore.clients.http import (
    BearerToken,
    RetryNotice,
    attempts_made,
    path_segment,
    retrying_session,
    send_with_bearer,
    transport_failure,
)
from stripe_sitecore.errors import APIError, ErrorKind

DEFAULT_SCOPE = "OrderAdmin BuyerUserAdmin BuyerReader"
MAX_PAGE_SIZE = 100
# OrderCloud refuses page numbers past 30; beyond that, page by ``sortBy=ID&ID=>{lastID}``.
MAX_PAGE_NUMBER = 30
TOKEN_REFRESH_MARGIN_SECONDS = 60
# The token endpoint's own transient failures; anything else from it means the credentials.
RETRYABLE_TOKEN_STATUSES = frozenset({429, 500, 502, 503, 504})

# OrderCloud IDs: "can only contain characters Aa-Zz, 0-9, -, and _" (at most 100 of them).
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,100}")
ID_RULE = "letters, digits, - and _ only, at most 100"

# Money travels as JSON numbers; encode and decode them as Decimal so no float ever touches them.
_json_encoder = msgspec.json.Encoder(decimal_format="number")
_json_decoder = msgspec.json.Decoder(float_hook=Decimal)


class OrderCloudError(APIError):
    """An error answer from OrderCloud, with its ``{"Errors": [...]}`` parsed.

    ``status`` is None when no answer came at all; ``attempts`` counts the tries it took.
    """

    system = "ordercloud"

    def __init__(
        self,
        status: int | None,
        method: str,
        path: str,
        errors: list[dict[str, Any]],
        *,
        attempts: int = 1,
    ):
        self.status = status
        self.method = method
        self.path = path
        self.errors = errors
        self.attempts = attempts
        first = errors[0] if errors else {}
        self.error_code = first.get("ErrorCode")
        self.data = first.get("Data")
        message = first.get("Message") or "no error body"
        self.message = message
        answer = "no answer" if status is None else f"{status} {self.error_code}"
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"OrderCloud {method} {path} -> {answer}: {message}{tries}")

    def refusal_code(self) -> str:
        return str(self.error_code or self.status)

    def refusal_details(self) -> dict[str, Any]:
        return {
            "system": "ordercloud",
            "status": self.status,
            "error_code": self.error_code,
            "method": self.method,
            "path": self.path,
        }


class OrderCloudAuthError(OrderCloudError):
    """Credentials refused (token endpoint 400/401, or 401 after a fresh token)."""

    def kind(self) -> ErrorKind:
        # The token endpoint answers 400 to a wrong secret: that is the configuration, for
        # every record, not a refusal of one.
        return ErrorKind.CONFIG


class OrderCloudForbidden(OrderCloudError):
    """The API client lacks a role; ``data`` lists the sufficient roles."""


class OrderCloudNotFound(OrderCloudError, SitecoreNotFound):
    pass


class OrderCloudAlreadyExists(OrderCloudError, SitecoreAlreadyExists):
    """409 on create: an object with that ID exists, which for our deterministic IDs means done."""


class OrderCloudUnavailable(OrderCloudError):
    """5xx, or no answer (connection refused or reset, timeout), after every retry: a later
    task retry may succeed."""


class OrderCloudRateLimited(OrderCloudUnavailable):
    """Still 429 after every retry."""


_ERRORS_BY_STATUS = {
    401: OrderCloudAuthError,
    403: OrderCloudForbidden,
    404: OrderCloudNotFound,
    409: OrderCloudAlreadyExists,
    429: OrderCloudRateLimited,
}


def _error_class(status: int) -> type[OrderCloudError]:
    if status >= 500:
        return OrderCloudUnavailable
    return _ERRORS_BY_STATUS.get(status, OrderCloudError)


def segment(value: Any, what: str) -> str:
    """An OrderCloud id for a URL path: checked (``InvalidId`` if it cannot be one) and encoded.

    Ids reach the paths from outside (PaymentIntent metadata, webhook bodies, replays): an order
    id ``../../buyers/b/users/u`` must never turn a PATCH of an order into one of a user."""
    return path_segment(value, system="OrderCloud", what=what, pattern=ID_PATTERN, rule=ID_RULE)


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
    buyer_id: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_retries: int = 5
    backoff_factor: float = 0.5
    backoff_jitter: float = 0.25
    token_refresh_margin: float = TOKEN_REFRESH_MARGIN_SECONDS

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
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("connect_timeout and read_timeout must be > 0 seconds")
        if self.max_retries < 0 or self.backoff_factor < 0:
            raise ValueError("max_retries and backoff_factor must be >= 0")

    @property
    def token_url(self) -> str:
        return self.auth_url or f"{self.base_url.rstrip('/')}/oauth/token"


class OrderCloudClient:
    """``on_secret`` is told every access token as it arrives (the hook masks them in logs);
    ``on_retry`` and ``sleep`` observe and perform the waits between retries; ``clock`` is
    the monotonic clock token expiry is measured on."""

    def __init__(
        self,
        settings: OrderCloudSettings,
        session: requests.Session | None = None,
        *,
        on_secret: Callable[[str], None] | None = None,
        on_retry: Callable[[RetryNotice], None] | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
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
        self._token = BearerToken(
            self._fetch_token,
            refresh_margin=settings.token_refresh_margin,
            clock=clock,
            on_secret=on_secret,
        )

    @property
    def _timeout(self) -> tuple[float, float]:
        return (self.settings.connect_timeout, self.settings.read_timeout)

    def _send(self, method: str, path: str, url: str, **kwargs: Any) -> requests.Response:
        """One request through the retrying session; no answer at all is a typed error."""
        try:
            return self.session.request(method, url, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            reason, attempts = transport_failure(exc, self.settings.max_retries)
            errors = [{"ErrorCode": "NoAnswer", "Message": reason}]
            raise OrderCloudUnavailable(None, method, path, errors, attempts=attempts) from exc

    # --- auth -------------------------------------------------------------------------
    def _fetch_token(self) -> tuple[str, float]:
        s = self.settings
        form = {"grant_type": s.grant_type, "client_id": s.client_id, "scope": s.scope}
        if s.grant_type == "password":
            form.update(username=s.username, password=s.user_password)
        if s.client_secret:
            form["client_secret"] = s.client_secret
        response = self._send("POST", "/oauth/token", s.token_url, data=form)
        if response.status_code != 200:
            body = _json_or_none(response)
            body = body if isinstance(body, dict) else {}
            # Never echo the request: it carries the client secret.
            description = body.get("error_description") or body.get("error") or response.reason
            error_class = (
                _error_class(response.status_code)
                if response.status_code in RETRYABLE_TOKEN_STATUSES
                else OrderCloudAuthError
            )
            raise error_class(
                response.status_code,
                "POST",
                "/oauth/token",
                [{"ErrorCode": body.get("error", "TokenRequestFailed"), "Message": description}],
                attempts=attempts_made(response),
            )
        body = response.json()
        return body["access_token"], float(body.get("expires_in", 600))

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
        content_type = {} if json is None else {"Content-Type": "application/json"}
        data = None if json is None else _json_encoder.encode(json)
        response = send_with_bearer(
            self._token,
            lambda token: self._send(
                method,
                path,
                url,
                params=params,
                data=data,
                headers={"Authorization": f"Bearer {token}", **content_type},
            ),
        )
        if response.status_code >= 400:
            body = _json_or_none(response)
            errors = body.get("Errors") if isinstance(body, dict) else None
            raise _error_class(response.status_code)(
                response.status_code, method, path, errors or [], attempts=attempts_made(response)
            )
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
    def _orders_path(self) -> str:
        return f"/orders/{segment(self.settings.order_direction, 'order direction')}"

    def _order_path(self, order_id: str) -> str:
        return f"{self._orders_path()}/{segment(order_id, 'order')}"

    def list_orders(self, filters: Filters | None = None) -> Iterator[dict[str, Any]]:
        return self.iter_list(self._orders_path(), filters)

    def get_order(self, order_id: str) -> dict[str, Any]:
        return self.request("GET", self._order_path(order_id))

    def patch_order(self, order_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", self._order_path(order_id), json=patch)

    def create_payment(self, order_id: str, payment: dict[str, Any]) -> bool:
        """Create the payment; False if a payment with that ID already exists."""
        try:
            self.request("POST", f"{self._order_path(order_id)}/payments", json=payment)
        except OrderCloudAlreadyExists:
            return False
        return True

    def create_payment_transaction(
        self, order_id: str, payment_id: str, transaction: dict[str, Any]
    ) -> bool:
        """Add a transaction to a payment; False if one with that ID already exists."""
        path = f"{self._order_path(order_id)}/payments/{segment(payment_id, 'payment')}"
        try:
            self.request("POST", f"{path}/transactions", json=transaction)
        except OrderCloudAlreadyExists:
            return False
        return True

    def get_worksheet(self, order_id: str) -> dict[str, Any]:
        """The order with all its line items, promotions and ship estimates in one request
        (``OrderWorksheet``): what the ERP needs, without paging the line items."""
        return self.request("GET", f"{self._order_path(order_id)}/worksheet")

    def list_payments(self, order_id: str) -> list[dict[str, Any]]:
        return list(self.iter_list(f"{self._order_path(order_id)}/payments"))

    # --- buyer users ----------------------------------------------------------------------
    def _users_path(self, buyer_id: str | None) -> str:
        buyer = buyer_id or self.settings.buyer_id
        if not buyer:
            raise ValueError("no buyer: set buyer_id in the OrderCloud connection's extra")
        return f"/buyers/{segment(buyer, 'buyer')}/users"

    def list_users(
        self, filters: Filters | None = None, *, buyer_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Buyer users (of the connection's ``buyer_id`` unless given). Users have no
        LastUpdated: detect changes by content or an ``xp`` timestamp."""
        return self.iter_list(self._users_path(buyer_id), filters)

    def get_user(self, user_id: str, *, buyer_id: str | None = None) -> dict[str, Any]:
        return self.request("GET", f"{self._users_path(buyer_id)}/{segment(user_id, 'user')}")

    def create_user(self, user: dict[str, Any], *, buyer_id: str | None = None) -> dict[str, Any]:
        """Create a buyer user; give it an ``ID`` so a retry meets ``OrderCloudAlreadyExists``
        instead of making a second user."""
        return self.request("POST", self._users_path(buyer_id), json=user)

    def patch_user(
        self, user_id: str, patch: dict[str, Any], *, buyer_id: str | None = None
    ) -> dict[str, Any]:
        path = f"{self._users_path(buyer_id)}/{segment(user_id, 'user')}"
        return self.request("PATCH", path, json=patch)

    def check_credentials(self) -> None:
        """A token plus one read that needs an order role."""
        self.request("GET", self._orders_path(), params={"pageSize": 1})


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
