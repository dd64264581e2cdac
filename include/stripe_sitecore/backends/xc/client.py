"""Sitecore Experience Commerce (XC 9/10) Commerce Engine client: Identity Server tokens, the
shop context headers, OData reads with ``$expand``, commands and entity-view actions, errors
typed from XC's command messages.

Plain ``requests``: usable without Airflow. Transient failures (connection errors, resets, read
timeouts, 429 and 5xx) are retried by the shared ``retrying_session``, honouring
``Retry-After``; what still fails when the retries run out is raised as an ``XCError``
subclass, never as a bare transport exception.

Every write is a PUT, and the session retries PUTs too. That is safe because of what each write
is: ``SetOrderStatus()`` sets a status (twice gives the same status); ``CancelOrder()`` of a
cancelled order is reported as already done; entity-view actions (``DoUxAction()``) echo the
entity's ``Version``, so a retry of an action that had committed before its answer was lost
meets a stale version and is refused (``XCVersionConflict``) instead of running twice, and the
payment and refund methods then re-read the order and report "already recorded";
``AddCustomer`` of an e-mail that exists is refused (``XCAlreadyExists``).

How XC words things (API-NOTES.md, Sitecore's own Postman collections): GETs answer OData JSON
(``@odata.context``, ``@odata.type``; ``Components`` and ``Lines`` only when ``$expand``-ed);
commands answer ``{"ResponseCode", "Messages": [{"Code", "Text", "CommerceTermKey"}],
"Models"}``, with HTTP 200 also when a pipeline refused the command: the messages say so. A
request the engine refuses outright (unknown shop, bad id) answers 4xx with one
``CommandMessage``. Money is ``{"CurrencyCode", "Amount"}``, decoded as ``Decimal``.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

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

API_PREFIX = "/api"
TOKEN_PATH = "/connect/token"
GRANT_TYPES = ("password", "client_credentials")
# Sitecore's Postman collections: the public client that takes the password grant, and its scope.
DEFAULT_CLIENT_ID = "postman-api"
PASSWORD_GRANT_SCOPE = "openid EngineAPI postman_api"
# Identity Server refuses identity scopes (openid) without a user; the engine needs EngineAPI.
CLIENT_CREDENTIALS_SCOPE = "EngineAPI"
# The SDK's Habitat environment (Sitecore.HabitatHome.Commerce, Habitat Environment.postman_*).
DEFAULT_SHOP_NAME = "CommerceEngineDefaultStorefront"
DEFAULT_ENVIRONMENT = "HabitatAuthoring"
DEFAULT_SHOPPER_ID = "ShopperId"
DEFAULT_LANGUAGE = "en-US"
DEFAULT_CURRENCY = "USD"
DEFAULT_GEO_LOCATION = "IpAddress=1.0.0.0"
TOKEN_REFRESH_MARGIN_SECONDS = 60
# The token endpoint's own transient failures; anything else from it means the credentials.
RETRYABLE_TOKEN_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_PAGE_SIZE = 100
# Orders re-read at once after a search (within the session's connection pool).
REREAD_WORKERS = 8

ORDER_TYPE = "Sitecore.Commerce.Plugin.Orders.Order, Sitecore.Commerce.Plugin.Orders"
CUSTOMER_TYPE = "Sitecore.Commerce.Plugin.Customers.Customer, Sitecore.Commerce.Plugin.Customers"
ORDER_EXPAND = "Lines($expand=ChildComponents),Components"
LIST_EXPAND = "Items($expand=Components)"
ORDERS_SCOPE = "OrdersScope"
CUSTOMERS_SCOPE = "CustomersScope"
FEDERATED_PAYMENT = "#Sitecore.Commerce.Plugin.Payments.FederatedPaymentComponent"
CONTACT = "#Sitecore.Commerce.Core.ContactComponent"

# What the messages of a refused command are recognised by (``CommerceTermKey``). XC publishes
# no wording for a stale entity version (its ValidateEntityVersionBlock is not public source):
# the sandbox answers ``ValidationError`` / ``EntityVersionMismatch``, and an engine whose
# plugins word it otherwise needs its term key added here.
VERSION_CONFLICT_TERM_KEYS = frozenset({"EntityVersionMismatch"})
NOT_FOUND_TERM_KEYS = frozenset({"EntityNotFound"})
ALREADY_EXISTS_TERM_KEYS = frozenset({"AccountNameAlreadyInUse"})
# The shop context the connection sends is wrong for every call (InvalidShop is the engine's
# own, published wording; InvalidEnvironment the sandbox's).
CONTEXT_TERM_KEYS = frozenset({"InvalidShop", "InvalidEnvironment"})
CANCELLED = "Cancelled"  # two Ls, as XC spells it

# XC entity ids (Entity-Order-..., Entity-Customer-..., FriendlyIds, {guid} confirmation ids)
# and customer e-mail keys (Customers('jane@example.com')): no /, ?, #, (, ), spaces or control
# characters, so an id can never step out of its OData key literal or its path segment.
ID_PATTERN = re.compile(r"[A-Za-z0-9{][A-Za-z0-9_.@+{}~'-]{0,254}")
ID_RULE = "letters, digits and - _ . @ + { } ~ ' only, at most 255"
STATUS_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# Stripe object ids (pi_..., ch_..., re_...) as they travel in action properties.
EXTERNAL_ID_PATTERN = re.compile(r"[A-Za-z0-9_]{1,255}")
CURRENCY_PATTERN = re.compile(r"[A-Za-z]{3}")
# A card's last four digits, optionally masked: never anything that could be a card number.
MASKED_NUMBER_PATTERN = re.compile(r"[*xX]{0,16}[0-9]{4}")
# Header values: printable ASCII, so no value can split a header or add one.
HEADER_VALUE_PATTERN = re.compile(r"[\x20-\x7e]{1,256}")
CUSTOMER_FIELDS = ("FirstName", "LastName", "Email", "AccountStatus", "PhoneNumber", "Language")
CUSTOMER_PREFIX = "Entity-Customer-"
ACCOUNT_NUMBER_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,100}")
ACCOUNT_NUMBER_RULE = "letters, digits, _ . - only, at most 100"
BILLING_FIELDS = ("FirstName", "LastName", "Email", "CountryCode")

# Money travels as JSON numbers; decode them as Decimal so no float ever touches them.
_json_encoder = msgspec.json.Encoder(decimal_format="number")
_json_decoder = msgspec.json.Decoder(float_hook=Decimal)


# --- errors ----------------------------------------------------------------------------------


class XCError(APIError):
    """An error answer from XC, with its command messages (``Code``, ``Text``,
    ``CommerceTermKey``) parsed.

    ``status`` is None when no answer came at all (200 for a command a pipeline refused);
    ``attempts`` counts the tries it took; ``code``, ``text`` and ``term_key`` are those of the
    message that decided the error's class.
    """

    system = "xc"

    def __init__(
        self,
        status: int | None,
        method: str,
        path: str,
        messages: list[dict[str, Any]],
        *,
        attempts: int = 1,
        response_code: str | None = None,
        primary: dict[str, Any] | None = None,
    ):
        self.status = status
        self.method = method
        self.path = path
        self.messages = messages
        self.attempts = attempts
        self.response_code = response_code
        first = primary or (_failed(messages) or messages or [{}])[0]
        self.code = first.get("Code")
        self.text = first.get("Text") or "no error message"
        self.term_key = first.get("CommerceTermKey")
        answer = "no answer" if status is None else str(status)
        named = "/".join(str(part) for part in (self.code, self.term_key) if part)
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(
            f"XC {method} {path} -> {answer}{' ' + named if named else ''}: {self.text}{tries}"
        )

    def kind(self) -> ErrorKind:
        status = self.status
        if status is None or status >= 500 or status == 429:
            return ErrorKind.RETRY
        if status in (401, 403):
            return ErrorKind.CONFIG
        return ErrorKind.FINAL

    def refusal_code(self) -> str:
        return str(self.term_key or self.code or self.status)

    def refusal_details(self) -> dict[str, Any]:
        return {
            "system": "xc",
            "status": self.status,
            "code": self.code,
            "term_key": self.term_key,
            "method": self.method,
            "path": self.path,
        }


class XCAuthError(XCError):
    """Credentials refused: the Identity Server refused the grant, or the engine answered 401
    to a fresh token. The same for every record: fix the connection."""

    def kind(self) -> ErrorKind:
        # The token endpoint answers 400 (invalid_grant, invalid_client): still configuration.
        return ErrorKind.CONFIG


class XCForbidden(XCError):
    """403: the token is good but its user or client lacks a Commerce role."""

    def kind(self) -> ErrorKind:
        return ErrorKind.CONFIG


class XCContextRefused(XCError):
    """The engine does not know the connection's shop or environment (``InvalidShop``): every
    call would be refused the same way, so it is configuration."""

    def kind(self) -> ErrorKind:
        return ErrorKind.CONFIG


class XCNotFound(XCError, SitecoreNotFound):
    """404, or a command refused with ``EntityNotFound``."""


class XCCommandError(XCError):
    """A command refused with an ``Error`` message (e.g. ``IllegalRefundOperation``): final."""


class XCValidationError(XCError):
    """A command refused with a ``ValidationError`` message: the same request will be refused
    the same way, so it is final."""


class XCVersionConflict(XCValidationError):
    """An entity-view action carried a stale ``Version``: someone changed the entity since it
    was read. Never overwrite: re-read the entity and decide again. A retry can cure it."""

    def kind(self) -> ErrorKind:
        return ErrorKind.RETRY


class XCAlreadyExists(XCValidationError, SitecoreAlreadyExists):
    """A create met an existing entity (a customer e-mail already in use): already done."""


class XCUnavailable(XCError):
    """5xx, no answer (connection refused or reset, timeout), or an answer that is not XC's
    JSON, after every retry: a later task retry may succeed."""

    def kind(self) -> ErrorKind:
        return ErrorKind.RETRY


class XCRateLimited(XCUnavailable):
    """Still 429 after every retry."""


_ERRORS_BY_STATUS: dict[int, type[XCError]] = {
    401: XCAuthError,
    403: XCForbidden,
    404: XCNotFound,
    429: XCRateLimited,
}


def command_messages(body: Any) -> list[dict[str, Any]]:
    """The messages of an XC answer: a command's ``Messages``, or a lone ``CommandMessage``."""
    if not isinstance(body, dict):
        return []
    messages = body.get("Messages")
    if isinstance(messages, list):
        return [m for m in messages if isinstance(m, dict)]
    if "Code" in body and ("Text" in body or "CommerceTermKey" in body):
        return [body]
    return []


def _failed(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if str(m.get("Code", "")).lower() in ("error", "validationerror")]


def classify_answer(
    status: int | None, messages: list[dict[str, Any]]
) -> tuple[type[XCError], dict[str, Any] | None]:
    """The error class for an answer and the message that decided it: the status first (no
    answer, 5xx, 429, 401, 403, 404), then the messages' term keys, then their codes."""
    if status is None or status >= 500:
        return XCUnavailable, None
    failed = _failed(messages)
    if status in _ERRORS_BY_STATUS:
        return _ERRORS_BY_STATUS[status], (failed[0] if failed else None)
    for terms, error_class in (
        (CONTEXT_TERM_KEYS, XCContextRefused),
        (NOT_FOUND_TERM_KEYS, XCNotFound),
        (VERSION_CONFLICT_TERM_KEYS, XCVersionConflict),
        (ALREADY_EXISTS_TERM_KEYS, XCAlreadyExists),
    ):
        for message in failed:
            if message.get("CommerceTermKey") in terms:
                return error_class, message
    for message in failed:
        if str(message.get("Code")).lower() == "validationerror":
            return XCValidationError, message
    return XCCommandError, (failed[0] if failed else None)


def error_from_answer(
    status: int, method: str, path: str, body: Any, *, attempts: int = 1
) -> XCError | None:
    """The typed error an XC answer carries, or None if it is a success.

    A 2xx is an error only when it is a command whose ``ResponseCode`` is not ``Ok`` or whose
    messages include an ``Error`` or ``ValidationError`` (XC answers 200 for a command its
    pipeline refused, and some blocks add an error without aborting: the command still did not
    do what was asked).
    """
    messages = command_messages(body)
    response_code = body.get("ResponseCode") if isinstance(body, dict) else None
    if status < 400:
        is_command = isinstance(body, dict) and ("ResponseCode" in body or "Messages" in body)
        refused = response_code is not None and str(response_code).lower() != "ok"
        if not is_command or not (refused or _failed(messages)):
            return None
    error_class, primary = classify_answer(status, messages)
    if not messages and status >= 400 and body not in (None, "", b""):
        # Not XC's shape (an ASP.NET model-state error, a proxy's page): keep what it said.
        messages = [{"Code": "Error", "Text": str(body)[:300]}]
    return error_class(
        status,
        method,
        path,
        messages,
        attempts=attempts,
        response_code=response_code,
        primary=primary,
    )


# --- ids, money, dates -----------------------------------------------------------------------


def check_id(value: Any, what: str) -> str:
    """``value`` if it can be an XC id (``InvalidId`` if not): for ids that travel in bodies."""
    path_segment(value, system="XC", what=what, pattern=ID_PATTERN, rule=ID_RULE)
    return value


def key_literal(value: Any, what: str) -> str:
    """An XC id as an OData key literal for a URL path: checked (``InvalidId`` if it cannot be
    an XC id), quotes doubled inside ``'...'`` as OData escapes them, percent-encoded, so that
    ``Entity-Order-1')`` or ``../x`` can never change which entity or route is addressed."""
    check_id(value, what)
    return "'" + quote(value.replace("'", "''"), safe="") + "'"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        raise TypeError("booleans are not used in XC function parameters")
    if isinstance(value, int):
        return str(value)
    return "'" + quote(str(value).replace("'", "''"), safe="") + "'"


def function_path(name: str, **params: Any) -> str:
    """``/GetList(id='Orders',type='...',skip=0,take=10)``: an OData function call, its string
    parameters quoted and encoded (the caller checks ids that come from outside)."""
    args = ",".join(f"{key}={_literal(value)}" for key, value in params.items())
    return f"/{name}({args})"


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def parse_money(value: Any, where: str) -> Money:
    """XC ``Money`` (``{"CurrencyCode", "Amount"}``) as exact Decimal; anything else is refused
    with where it was found."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: XC Money must be {{CurrencyCode, Amount}}, not {value!r}")
    amount, currency = value.get("Amount"), value.get("CurrencyCode")
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal):
        raise ValueError(f"{where}.Amount must be a JSON number, not {amount!r}")
    amount = Decimal(amount)
    if not amount.is_finite():
        raise ValueError(f"{where}.Amount must be finite, not {amount}")
    if not isinstance(currency, str) or not CURRENCY_PATTERN.fullmatch(currency):
        raise ValueError(f"{where}.CurrencyCode must be a 3-letter code, not {currency!r}")
    return Money(amount, currency.upper())


def exact_amount(amount: Any, what: str) -> Decimal:
    """A money amount we send: Decimal or int, finite, never a float."""
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal):
        raise ValueError(f"{what} must be a Decimal (never a float), not {amount!r}")
    amount = Decimal(amount)
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"{what} must be a positive finite amount, not {amount}")
    return amount


def _currency(currency: Any, what: str) -> str:
    if not isinstance(currency, str) or not CURRENCY_PATTERN.fullmatch(currency):
        raise ValueError(f"{what} must be a 3-letter currency code, not {currency!r}")
    return currency.upper()


def _external_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not EXTERNAL_ID_PATTERN.fullmatch(value):
        raise ValueError(f"{what} must be letters, digits and _ (a Stripe id), not {value!r}")
    return value


def format_instant(value: datetime) -> str:
    """An aware datetime as XC's search filters take it: UTC, ISO-8601, ``Z``."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{value!r} is not an aware datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(value: Any, where: str) -> datetime:
    """An XC date (``2018-02-14T22:32:41.5332063+00:00``, 7 fractional digits allowed)."""
    try:
        instant = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be an ISO-8601 date, not {value!r}") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


def components(entity: Mapping[str, Any], odata_type: str) -> list[dict[str, Any]]:
    """The entity's components of one ``@odata.type`` (the entity must be read expanded)."""
    return [c for c in entity.get("Components") or () if c.get("@odata.type") == odata_type]


def federated_payments(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    return components(order, FEDERATED_PAYMENT)


def order_total(order: Mapping[str, Any]) -> Money:
    return parse_money((order.get("Totals") or {}).get("GrandTotal"), "Order.Totals.GrandTotal")


def order_customer_id(order: Mapping[str, Any]) -> str | None:
    for contact in components(order, CONTACT):
        if contact.get("CustomerId"):
            return contact["CustomerId"]
    return None


def _activity_transaction_ids(activity: Mapping[str, Any]) -> set[str]:
    return {c.get("TransactionId") for c in components(activity, FEDERATED_PAYMENT)} - {None}


# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class XCSettings:
    """``base_url`` is the Commerce Engine (the shops API is under ``/api``); the Identity
    Server is ``identity_url`` (default: the same host)."""

    base_url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_url: str | None = None
    grant_type: str = "password"
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str | None = field(default=None, repr=False)
    scope: str | None = None
    shop_name: str = DEFAULT_SHOP_NAME
    shopper_id: str = DEFAULT_SHOPPER_ID
    language: str = DEFAULT_LANGUAGE
    currency: str = DEFAULT_CURRENCY
    environment: str = DEFAULT_ENVIRONMENT
    geo_location: str = DEFAULT_GEO_LOCATION
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_retries: int = 5
    backoff_factor: float = 0.5
    backoff_jitter: float = 0.25
    token_refresh_margin: float = TOKEN_REFRESH_MARGIN_SECONDS

    def __post_init__(self) -> None:
        for name in ("base_url", "identity_url"):
            url = getattr(self, name)
            if url is not None and not str(url).startswith(("http://", "https://")):
                raise ValueError(f"{name} {url!r} must be an http(s) URL")
        if self.grant_type not in GRANT_TYPES:
            raise ValueError(
                f"grant_type {self.grant_type!r}: use {' or '.join(GRANT_TYPES)} (extra grant_type)"
            )
        if not self.client_id:
            raise ValueError("client_id (extra client_id) is empty")
        if self.grant_type == "password":
            if not self.username or not self.password:
                raise ValueError(
                    "the password grant needs login (e.g. sitecore\\admin) and password"
                )
            if "\\" not in self.username:
                raise ValueError(
                    f"login {self.username!r} must be domain-qualified, e.g. sitecore\\admin"
                )
        elif not self.client_secret:
            raise ValueError("client_credentials needs the client's secret (extra client_secret)")
        elif self.client_id == DEFAULT_CLIENT_ID:
            raise ValueError(
                "client_credentials needs a registered confidential client (extra client_id); "
                f"{DEFAULT_CLIENT_ID} is a public client for the password grant"
            )
        for name in ("shop_name", "shopper_id", "language", "currency", "environment"):
            if not HEADER_VALUE_PATTERN.fullmatch(getattr(self, name) or ""):
                raise ValueError(f"{name} {getattr(self, name)!r} must be printable ASCII")
        if not HEADER_VALUE_PATTERN.fullmatch(self.geo_location or ""):
            raise ValueError(f"geo_location {self.geo_location!r} must be printable ASCII")
        if not CURRENCY_PATTERN.fullmatch(self.currency):
            raise ValueError(f"currency {self.currency!r} must be a 3-letter code")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("connect_timeout and read_timeout must be > 0 seconds")
        if self.max_retries < 0 or self.backoff_factor < 0:
            raise ValueError("max_retries and backoff_factor must be >= 0")

    @property
    def token_url(self) -> str:
        return f"{(self.identity_url or self.base_url).rstrip('/')}{TOKEN_PATH}"

    @property
    def token_scope(self) -> str:
        if self.scope:
            return self.scope
        return PASSWORD_GRANT_SCOPE if self.grant_type == "password" else CLIENT_CREDENTIALS_SCOPE


# --- the client ------------------------------------------------------------------------------


class XCClient:
    """``on_secret`` is told every secret the client holds or makes at run time (access tokens
    as they arrive, generated customer passwords; the hook masks them in logs); ``on_retry`` and
    ``sleep`` observe and perform the waits between retries; ``clock`` is the monotonic clock
    token expiry is measured on."""

    def __init__(
        self,
        settings: XCSettings,
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
        self._on_secret = on_secret
        self._token = BearerToken(
            self._fetch_token,
            refresh_margin=settings.token_refresh_margin,
            clock=clock,
            on_secret=on_secret,
        )

    def close(self) -> None:
        self.session.close()

    @property
    def _timeout(self) -> tuple[float, float]:
        return (self.settings.connect_timeout, self.settings.read_timeout)

    def _secret(self, value: str) -> None:
        if self._on_secret is not None:
            self._on_secret(value)

    def _send(self, method: str, path: str, url: str, **kwargs: Any) -> requests.Response:
        """One request through the retrying session; no answer at all is a typed error."""
        try:
            return self.session.request(method, url, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            reason, attempts = transport_failure(exc, self.settings.max_retries)
            messages = [{"Code": "Error", "Text": reason, "CommerceTermKey": "NoAnswer"}]
            raise XCUnavailable(None, method, path, messages, attempts=attempts) from exc

    # --- auth -----------------------------------------------------------------------------
    def _fetch_token(self) -> tuple[str, float]:
        s = self.settings
        form = {"grant_type": s.grant_type, "client_id": s.client_id, "scope": s.token_scope}
        if s.grant_type == "password":
            form.update(username=s.username, password=s.password)
        if s.client_secret:
            form["client_secret"] = s.client_secret
        response = self._send("POST", TOKEN_PATH, s.token_url, data=form)
        body = _json_or_none(response)
        if response.status_code != 200:
            body = body if isinstance(body, dict) else {}
            # Never echo the request: it carries the password or the client secret.
            error = body.get("error") or "TokenRequestFailed"
            text = body.get("error_description") or body.get("error") or response.reason
            error_class = (
                XCRateLimited
                if response.status_code == 429
                else XCUnavailable
                if response.status_code in RETRYABLE_TOKEN_STATUSES
                else XCAuthError
            )
            raise error_class(
                response.status_code,
                "POST",
                TOKEN_PATH,
                [{"Code": "Error", "Text": text, "CommerceTermKey": error}],
                attempts=attempts_made(response),
            )
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise XCUnavailable(
                200,
                "POST",
                TOKEN_PATH,
                [{"Code": "Error", "Text": "the token answer has no access_token"}],
            )
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        return token, lifetime

    # --- requests ---------------------------------------------------------------------------
    def _context_headers(self, customer_id: str | None, currency: str | None) -> dict[str, str]:
        s = self.settings
        headers = {
            "ShopName": s.shop_name,
            "ShopperId": s.shopper_id,
            "Language": s.language,
            "Currency": currency or s.currency,
            "Environment": s.environment,
            "GeoLocation": s.geo_location,
        }
        # Only where the call is about one customer; a value that could not be a header (an
        # order's contact saying something odd) is left out rather than sent.
        if customer_id is not None and HEADER_VALUE_PATTERN.fullmatch(customer_id):
            headers["CustomerId"] = customer_id
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        customer_id: str | None = None,
        currency: str | None = None,
    ) -> Any:
        """One call to the shops API (``path`` is after ``/api``): the answer's JSON, or the
        typed error it carries."""
        api_path = f"{API_PREFIX}{path}"
        url = f"{self.settings.base_url.rstrip('/')}{api_path}"
        headers = self._context_headers(customer_id, currency)
        if json is not None:
            headers["Content-Type"] = "application/json"
        data = None if json is None else _json_encoder.encode(json)
        response = send_with_bearer(
            self._token,
            lambda token: self._send(
                method,
                api_path,
                url,
                params=params,
                data=data,
                headers={**headers, "Authorization": f"Bearer {token}"},
            ),
        )
        attempts = attempts_made(response)
        body: Any = None
        if response.content:
            try:
                body = _json_decoder.decode(response.content)
            except msgspec.DecodeError:
                if response.status_code < 400:
                    raise XCUnavailable(
                        response.status_code,
                        method,
                        api_path,
                        [{"Code": "Error", "Text": "the answer is not JSON",
                          "CommerceTermKey": "InvalidResponse"}],
                        attempts=attempts,
                    ) from None  # fmt: skip
                body = response.text
        error = error_from_answer(response.status_code, method, api_path, body, attempts=attempts)
        if error is not None:
            raise error
        return body

    def command(
        self,
        name: str,
        body: Mapping[str, Any],
        *,
        customer_id: str | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """``PUT /api/<name>()`` with a JSON body: the command, refused ones raised typed."""
        return self.request(
            "PUT", f"/{name}()", json=dict(body), customer_id=customer_id, currency=currency
        )

    def iter_list(
        self,
        list_id: str,
        entity_type: str,
        *,
        expand: str = LIST_EXPAND,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict[str, Any]]:
        """Every item of an XC managed list, ``skip``/``take`` a page at a time."""
        check_id(list_id, "list")
        _check_page_size(page_size)
        skip = 0
        while True:
            path = function_path("GetList", id=list_id, type=entity_type, skip=skip, take=page_size)
            body = self.request("GET", path, params={"$expand": expand})
            items = (body.get("Items") or []) if isinstance(body, dict) else []
            yield from items
            if len(items) < page_size:
                return
            skip += len(items)

    def search(
        self,
        scope: str,
        *,
        filter: str,
        order_by: str,
        term: str = "*",
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict[str, Any]]:
        """Every document of a search (``PUT /api/Search()``), ``skip``/``top`` a page at a
        time. The index lags the entities (XC refreshes it by minion, every 5 minutes by
        default): a document says what the entity was when indexed."""
        _check_page_size(page_size)
        skip = 0
        while True:
            body = self.request(
                "PUT",
                "/Search()",
                json={
                    "scope": scope,
                    "term": term,
                    "filter": filter,
                    "orderBy": order_by,
                    "skip": skip,
                    "top": page_size,
                },
            )
            documents = (body.get("Documents") or []) if isinstance(body, dict) else []
            yield from documents
            total = body.get("TotalItemCount") if isinstance(body, dict) else None
            skip += len(documents)
            if len(documents) < page_size or (isinstance(total, int) and skip >= total):
                return

    @staticmethod
    def _window_filter(since: datetime, until: datetime) -> str:
        if format_instant(since) >= format_instant(until):
            raise ValueError(f"the window [{since}, {until}) is empty")
        return f"DateUpdated ge {format_instant(since)} and DateUpdated lt {format_instant(until)}"

    # --- orders ---------------------------------------------------------------------------
    def check_credentials(self) -> None:
        """A token, the shop context, and one cheap read that needs a Commerce role."""
        path = function_path("GetList", id="Orders", type=ORDER_TYPE, skip=0, take=1)
        self.request("GET", path)

    def get_order(self, order_id: str) -> dict[str, Any]:
        """The order with its lines (and their child components) and components."""
        path = f"/Orders({key_literal(order_id, 'order')})"
        return self.request("GET", path, params={"$expand": ORDER_EXPAND})

    def list_orders(
        self, list_name: str = "Orders", *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Orders of a managed list (``Orders``, ``PendingOrders``, ``OnHoldOrders``, ...),
        with their components."""
        return self.iter_list(list_name, ORDER_TYPE, page_size=page_size)

    def search_orders(
        self, since: datetime, until: datetime, *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Order index documents whose ``DateUpdated`` is in ``[since, until)``, oldest first."""
        return self.search(
            ORDERS_SCOPE,
            filter=self._window_filter(since, until),
            order_by="DateUpdated asc",
            page_size=page_size,
        )

    def changed_order_ids(
        self, since: datetime, until: datetime, *, page_size: int = MAX_PAGE_SIZE
    ) -> list[str]:
        """Ids of the orders changed in ``[since, until)`` as the index shows them, each once
        (a page boundary can repeat a document that moved while paging)."""
        seen: dict[str, None] = {}
        for document in self.search_orders(since, until, page_size=page_size):
            entity_id = document.get("EntityId")
            if isinstance(entity_id, str):
                seen.setdefault(entity_id)
        return list(seen)

    def changed_orders(
        self, since: datetime, until: datetime, *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """The orders changed in ``[since, until)``, each re-read as it is now (the index only
        says which changed); one deleted since it was indexed is left out. The re-reads run
        ``REREAD_WORKERS`` at a time (one at a time, a window's retries and Retry-After waits
        add up), and come in the index's order."""

        def reread(order_id: str) -> dict[str, Any] | None:
            try:
                return self.get_order(order_id)
            except XCNotFound:
                return None

        order_ids = self.changed_order_ids(since, until, page_size=page_size)
        with ThreadPoolExecutor(REREAD_WORKERS, thread_name_prefix="xc-reread") as pool:
            for order in pool.map(reread, order_ids):
                if order is not None:
                    yield order

    def set_order_status(self, order_id: str, status: str) -> dict[str, Any]:
        """``SetOrderStatus()``: any status, custom ones too (``WaitingForPayment``, ``Paid``).
        Setting the status an order already has changes nothing, so a retry is harmless."""
        check_id(order_id, "order")
        if not isinstance(status, str) or not STATUS_PATTERN.fullmatch(status):
            raise ValueError(f"order status {status!r} must be letters, digits and _")
        return self.command("SetOrderStatus", {"orderId": order_id, "status": status})

    def cancel_order(self, order_id: str) -> bool:
        """``CancelOrder()``; False if the order was already cancelled (a retry of a cancel
        that committed, or someone else's cancel)."""
        check_id(order_id, "order")
        try:
            self.command("CancelOrder", {"orderId": order_id})
        except (XCValidationError, XCCommandError):
            if self.get_order(order_id).get("Status") == CANCELLED:
                return False
            raise
        return True

    # --- entity views and actions ---------------------------------------------------------------
    def entity_view(
        self, entity_id: str, view_name: str, *, for_action: str = "", item_id: str = ""
    ) -> dict[str, Any]:
        """``GetEntityView()``: the view an action is done through, with the entity's hidden
        ``Version`` property."""
        if entity_id:
            check_id(entity_id, "entity")
        if item_id:
            check_id(item_id, "item")
        body = {
            "entityId": entity_id,
            "viewName": view_name,
            "forAction": for_action,
            "itemId": item_id,
        }
        view = self.request("PUT", "/GetEntityView()", json=body)
        if not isinstance(view, dict):
            raise XCUnavailable(
                200,
                "PUT",
                f"{API_PREFIX}/GetEntityView()",
                [{"Code": "Error", "Text": "the answer is not an entity view",
                  "CommerceTermKey": "InvalidResponse"}],
            )  # fmt: skip
        return view

    def do_action(
        self,
        view: Mapping[str, Any],
        action: str,
        *,
        item_id: str | None = None,
        values: Mapping[str, Any] | None = None,
        customer_id: str | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """``DoUxAction()`` on ``view`` as ``GetEntityView()`` gave it: its properties (the
        hidden ``Version`` among them) sent back, ``values`` set by property name (added when
        the view lacks them; None leaves a property as it is). A stale ``Version`` raises
        ``XCVersionConflict``."""
        body = {k: v for k, v in view.items() if k != "@odata.context"}
        body["Action"] = action
        if item_id is not None:
            body["ItemId"] = item_id
        properties = [dict(p) for p in view.get("Properties") or () if isinstance(p, Mapping)]
        by_name = {p.get("Name"): p for p in properties}
        for name, value in (values or {}).items():
            if value is None:
                continue
            text = value if isinstance(value, str) else _property_text(value, name)
            if name in by_name:
                by_name[name]["Value"] = text
            else:
                properties.append({"Name": name, "Value": text})
        body["Properties"] = properties
        return self.request(
            "PUT", "/DoUxAction()", json=body, customer_id=customer_id, currency=currency
        )

    def run_action(
        self,
        entity_id: str,
        view_name: str,
        action: str,
        *,
        item_id: str = "",
        values: Mapping[str, Any] | None = None,
        customer_id: str | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """Read the view for ``action`` and do it: the Version echoed is the one just read."""
        view = self.entity_view(entity_id, view_name, for_action=action, item_id=item_id)
        return self.do_action(
            view,
            action,
            item_id=item_id,
            values=values,
            customer_id=customer_id,
            currency=currency,
        )

    def hold_order(self, order_id: str) -> dict[str, Any]:
        return self.run_action(order_id, "Master", "HoldOrder")

    def release_order(self, order_id: str) -> dict[str, Any]:
        return self.run_action(order_id, "Master", "ReleaseOrder")

    # --- payments -----------------------------------------------------------------------------
    def add_federated_payment(
        self,
        order_id: str,
        *,
        payment_intent_id: str,
        charge_id: str,
        amount: Decimal,
        currency: str,
        payment_method: str = "Stripe",
        transaction_status: str = "Captured",
        masked_number: str | None = None,
        card_type: str | None = None,
        expires_month: int | None = None,
        expires_year: int | None = None,
        billing: Mapping[str, str] | None = None,
    ) -> bool:
        """Record a captured Stripe payment on the order as a federated payment (``AddPayment``;
        XC allows it while the order is ``OnHold``): component id = the PaymentIntent id,
        ``TransactionId`` = the charge id, ``Amount`` as Money. False if the order already has
        a payment with that charge (read before the write, and again when the write met a
        stale Version: a retry of an AddPayment that had committed). ``billing`` is the
        payment's billing party (``FirstName``, ``LastName``, ``Email``, ``CountryCode``), as
        the engine plugin's ``AddPayment`` takes it (docs/xc.md)."""
        check_id(order_id, "order")
        _external_id(payment_intent_id, "payment_intent_id")
        _external_id(charge_id, "charge_id")
        amount = exact_amount(amount, "payment amount")
        currency = _currency(currency, "payment currency")
        if masked_number is not None and not MASKED_NUMBER_PATTERN.fullmatch(masked_number):
            raise ValueError("masked_number must be the card's last four digits, never a number")
        unknown = sorted(set(billing or {}) - set(BILLING_FIELDS))
        if unknown:
            raise ValueError(f"unknown billing field(s) {', '.join(unknown)}")
        order = self.get_order(order_id)
        if _has_charge(order, charge_id):
            return False
        values = {
            "Option": "Federated",
            "PaymentId": payment_intent_id,
            "TransactionId": charge_id,
            "TransactionStatus": transaction_status,
            "PaymentMethodName": payment_method,
            "PaymentInstrumentType": "credit_card",
            "Amount": amount,
            "Currency": currency,
            "MaskedNumber": masked_number,
            "CardType": card_type,
            "ExpiresMonth": expires_month,
            "ExpiresYear": expires_year,
            **{f"Billing{name}": value for name, value in (billing or {}).items() if value},
        }
        try:
            self.run_action(
                order_id,
                "OrderPaymentDetails",
                "AddPayment",
                values=values,
                customer_id=order_customer_id(order),
                currency=currency,
            )
        except XCVersionConflict:
            if _has_charge(self.get_order(order_id), charge_id):
                return False
            raise
        return True

    def order_sales_activities(self, order_id: str) -> list[dict[str, Any]]:
        """The order's payment ledger: ``SalesActivity`` entities (``ActivityAmount`` Money,
        negative for refunds; ``PaymentStatus``), with their components."""
        path = function_path("GetOrderSalesActivities", orderId=check_id(order_id, "order"))
        body = self.request("GET", path, params={"$expand": "Components"})
        return list(body.get("value") or []) if isinstance(body, dict) else []

    def refund_recorded(self, order_id: str, refund_id: str) -> bool:
        """Whether the order's sales activities already hold the refund ``refund_id``."""
        return self._recorded(order_id, refund_id)

    def _recorded(self, order_id: str, transaction_id: str) -> bool:
        return any(
            transaction_id in _activity_transaction_ids(activity)
            for activity in self.order_sales_activities(order_id)
        )

    def refund_payment(
        self,
        order_id: str,
        payment_id: str,
        *,
        amount: Decimal,
        currency: str,
        refund_id: str,
    ) -> bool:
        """Refund ``amount`` of the federated payment ``payment_id`` (``RefundPayment``; partial
        refunds reduce the payment), recorded as a negative sales activity whose transaction
        id is the Stripe refund id. False if that refund is already recorded. XC refuses more
        than the payment holds (``IllegalRefundOperation``, final)."""
        check_id(order_id, "order")
        check_id(payment_id, "payment")
        amount = exact_amount(amount, "refund amount")
        currency = _currency(currency, "refund currency")
        _external_id(refund_id, "refund_id")
        if self._recorded(order_id, refund_id):
            return False
        values = {"Amount": amount, "Currency": currency, "TransactionId": refund_id}
        try:
            self.run_action(
                order_id,
                "OrderPayments",
                "RefundPayment",
                item_id=payment_id,
                values=values,
                currency=currency,
            )
        except XCVersionConflict:
            if self._recorded(order_id, refund_id):
                return False
            raise
        return True

    def void_payment(self, order_id: str, payment_id: str) -> bool:
        """``VoidPayment``: the payment is released and leaves the order. False if the order no
        longer has it."""
        check_id(payment_id, "payment")
        order = self.get_order(order_id)
        if not any(p.get("Id") == payment_id for p in federated_payments(order)):
            return False
        try:
            self.run_action(order_id, "OrderPayments", "VoidPayment", item_id=payment_id)
        except XCVersionConflict:
            if not any(
                p.get("Id") == payment_id for p in federated_payments(self.get_order(order_id))
            ):
                return False
            raise
        return True

    # --- customers ------------------------------------------------------------------------------
    def get_customer(self, customer_id: str) -> dict[str, Any]:
        """A customer by id or by e-mail (``Customers('jane@example.com')``)."""
        path = f"/Customers({key_literal(customer_id, 'customer')})"
        return self.request("GET", path, params={"$expand": "Components"})

    def list_customers(self, *, page_size: int = MAX_PAGE_SIZE) -> Iterator[dict[str, Any]]:
        return self.iter_list("Customers", CUSTOMER_TYPE, page_size=page_size)

    def search_customers(
        self, since: datetime, until: datetime, *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Customer index documents whose ``DateUpdated`` is in ``[since, until)``."""
        return self.search(
            CUSTOMERS_SCOPE,
            filter=self._window_filter(since, until),
            order_by="DateUpdated asc",
            page_size=page_size,
        )

    def add_customer(
        self,
        *,
        email: str,
        first_name: str = "",
        last_name: str = "",
        account_status: str = "ActiveAccount",
        phone_number: str | None = None,
        language: str | None = None,
        password: str | None = None,
        account_number: str | None = None,
    ) -> dict[str, Any]:
        """``AddCustomer``: the new customer as XC stores it. XC wants a password; without one
        a random one is made (the customer resets it) and never leaves this call. An e-mail
        already in use raises ``XCAlreadyExists`` (the customer is there: look it up by
        e-mail), which is also what a retried create that had committed meets.
        ``account_number`` names the customer: the engine plugin makes its id
        ``Entity-Customer-{account_number}`` (docs/xc.md), so a create can be looked up by the
        id it was meant to get."""
        check_id(email, "customer e-mail")
        if account_number is not None and not ACCOUNT_NUMBER_PATTERN.fullmatch(account_number):
            raise ValueError(f"account number {account_number!r}: {ACCOUNT_NUMBER_RULE}")
        if password is None:
            password = secrets.token_urlsafe(24)
            self._secret(password)
        values = {
            "Email": email,
            "FirstName": first_name,
            "LastName": last_name,
            "AccountStatus": account_status,
            "PhoneNumber": phone_number,
            "Language": language,
            "Password": password,
            "AccountNumber": account_number,
        }
        command = self.run_action("", "Details", "AddCustomer", values=values)
        customer_id = next(
            (
                model.get("CustomerId")
                for model in command.get("Models") or ()
                if str(model.get("@odata.type", "")).endswith(".CustomerAdded")
            ),
            None,
        )
        return self.get_customer(customer_id or email)

    def edit_customer(self, customer_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """``EditCustomer`` with ``changes`` (``FirstName``, ``LastName``, ``Email``,
        ``AccountStatus``, ``PhoneNumber``, ``Language``): the customer as it is then. A stale
        Version (someone edited it since the view was read) raises ``XCVersionConflict``: the
        caller re-reads and decides again, never overwrites."""
        unknown = sorted(set(changes) - set(CUSTOMER_FIELDS))
        if unknown:
            raise ValueError(
                f"cannot edit customer field(s) {', '.join(unknown)}; "
                f"editable: {', '.join(CUSTOMER_FIELDS)}"
            )
        self.run_action(
            customer_id, "Details", "EditCustomer", values=changes, customer_id=customer_id
        )
        return self.get_customer(customer_id)


def _has_charge(order: Mapping[str, Any], charge_id: str) -> bool:
    return any(p.get("TransactionId") == charge_id for p in federated_payments(order))


def _property_text(value: Any, name: str) -> str:
    """An entity-view property value as XC's views carry them: text, money digit for digit."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int):
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"property {name} must be finite, not {value}")
        return format(value, "f") if isinstance(value, Decimal) else str(value)
    raise ValueError(f"property {name} must be text or a Decimal, not {type(value).__name__}")


def _check_page_size(page_size: int) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise ValueError(f"page_size must be an integer, not {page_size!r}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")


def _json_or_none(response: requests.Response) -> Any:
    try:
        return _json_decoder.decode(response.content) if response.content else None
    except msgspec.DecodeError:
        return None
