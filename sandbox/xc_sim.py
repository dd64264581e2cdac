"""Sitecore Experience Commerce (XC 9/10) simulator: a Commerce Engine and its Sitecore Identity
Server, stateful, on XC's wire format. Orders with lines, components and statuses; entity
``Version`` bumped by every write and checked by every entity-view action; federated payments,
refunds and voids with their ``SalesActivity`` ledger; customers; managed lists; an order and
customer search index that lags; command-message errors; fault injection, clock and counters
through the shared sandbox controls.

Money is ``Decimal`` end to end: bodies are parsed with ``parse_float=Decimal`` and written back
digit for digit; entity-view values are text and parsed as decimals.

What is published, and followed here:

- The token request: ``POST /connect/token``, ``grant_type=password``, ``username``
  ``sitecore\\admin``, ``client_id`` ``postman-api`` (no secret), ``scope`` ``openid EngineAPI
  postman_api`` (Sitecore.HabitatHome.Commerce, ``src/Commerce.Engine/postman/Shops/
  Authentication.postman_collection.json``); the answer and the OAuth 2 errors
  (``invalid_grant``, ``invalid_client``, ``invalid_scope``) as IdentityServer4 gives them.
- The context headers and their Habitat values (``Habitat Environment.postman_environment.json``:
  ``ShopName`` ``CommerceEngineDefaultStorefront``, ``Environment`` ``HabitatAuthoring``,
  ``ShopperId``, ``Language`` ``en-US``, ``Currency`` ``USD``, ``GeoLocation``).
- Routes and request bodies (``OrdersAPISamples``, ``CustomersAPISamples``,
  ``SearchAPISamples`` collections): ``GET /api/Orders('..')?$expand=Lines($expand=
  ChildComponents),Components``, ``GET /api/GetList(id,type,skip,take)?$expand=Items($expand=
  Components)`` and the list names (``Orders``, ``PendingOrders``, ``OnHoldOrders``, ...,
  ``Customers``, ``SalesActivities``, ``SalesCharges``, ``SalesCredits``),
  ``GET /api/GetOrderSalesActivities(orderId='..')``, ``GET /api/Customers('..')`` (by id or by
  e-mail), ``PUT /api/SetOrderStatus()`` ``{orderId, status}`` (any status), ``PUT
  /api/CancelOrder()`` ``{orderId}``, ``PUT /api/GetEntityView()`` ``{entityId, viewName,
  forAction, itemId}`` and ``PUT /api/DoUxAction()`` with the view echoed, its hidden
  ``Version`` property included; the actions ``HoldOrder``, ``ReleaseOrder``, ``AddPayment``
  (federated), ``RefundPayment`` and ``VoidPayment`` (``ItemId`` = the payment),
  ``AddCustomer`` (answer ``Models`` ``CustomerAdded {CustomerId}``), ``EditCustomer``; the
  search view's ``Term``, ``Filter``, ``OrderBy``, ``Top``, ``Skip``.
- EntityView JSON (doc.sitecore.com, "EntityView Sample - Order Preview").
- The ``CommandMessage`` error JSON ``{@odata.context ..#Sitecore.Commerce.Core.CommandMessage,
  MessageDate, Code, Text, CommerceTermKey}`` ("Shop '..' does not exist." / ``InvalidShop``,
  quoted from an engine log in a public post) and the message codes ``Error``,
  ``ValidationError``, with ``EntityNotFound`` "Entity {0} was not found." and
  ``InvalidOrMissingPropertyValue`` "Invalid or missing value for property '{0}'." as the
  engine's own plugins word them.
- Order, line, component, Money, Party and SalesActivity fields as the engine's own code builds
  them: the Habitat order import (``Plugin.Demo.ImportOrders``, ``CreateOfflineOrderBlock``:
  ``Totals {SubTotal, AdjustmentsTotal, GrandTotal, PaymentsTotal}``, ``CartLineComponent``
  with ``ItemId`` ``catalog|product|variant``, ``Quantity``, ``UnitListPrice``, line ``Totals``,
  ``CartProductComponent`` and ``ItemVariationSelectedComponent`` child components,
  ``FederatedPaymentComponent``, ``PhysicalFulfillmentComponent`` with its ``ShippingParty``,
  ``ContactComponent {Email, CustomerId, ShopperId, IsRegistered}``, list memberships) and the
  Braintree sample plugin (``RefundFederatedPaymentBlock``: a partial refund reduces the
  payment, a full one removes it; a negative ``SalesActivity`` "Refund the Federated Payment",
  ``PaymentStatus`` ``Completed``, in ``SalesActivities``, ``SalesCredits`` and
  ``OrderSalesActivities-{FriendlyId}``; more than the payment holds is refused, ``Error`` /
  ``IllegalRefundOperation`` "Order Federated Payment amount is less than refund amount"; the
  refund needs the order ``Completed``, ``ValidationError`` / ``InvalidOrderState``).

What is synthesised (API-NOTES.md: no verbatim XC order GET response is published):

- The order and customer GET answers as wholes (which ``CommerceEntity`` fields appear,
  ``@odata.context`` ``$metadata#Orders/$entity``), the ``GetList`` answer (a
  ``CommerceList`` with ``Items``), the ``GetOrderSalesActivities`` collection (``value``), the
  ``Search()`` answer (``{TotalItemCount, Documents}``, one document per entity with the index's
  filterable fields) and the command envelope around ``{ResponseCode, Messages, Models}``.
  The customer's phone sits in a ``CustomerDetailsComponent`` view.
- The stale-Version refusal (``ValidationError`` / ``EntityVersionMismatch``: the engine's
  ValidateEntityVersionBlock wording is not public), ``AccountNameAlreadyInUse`` for a
  duplicate customer e-mail, and the wording of ``InvalidEnvironment``, ``InvalidAction``,
  ``InvalidSearchScope``, ``InvalidFilter``, ``PaymentAlreadyExists``, ``InvalidCurrency``.
- ``AddPayment``'s properties for a payment taken outside XC (``PaymentId`` becomes the
  component id; ``TransactionId``, ``TransactionStatus``, ``PaymentMethodName``, ``Amount``,
  ``Currency``, ``MaskedNumber``, ``CardType``, ``ExpiresMonth``, ``ExpiresYear``); its sales
  activity is ``Settled`` at once (the money was captured outside; no minion settles it).
  ``RefundPayment``'s ``Amount`` and ``TransactionId`` (the sample refunds the whole payment).
- The action rules: ``HoldOrder`` Pending -> OnHold, ``ReleaseOrder`` OnHold -> Pending,
  ``AddPayment`` only OnHold (API-NOTES), ``CancelOrder`` unless Released, Completed or
  Cancelled, ``RefundPayment`` only Completed (``refund_requires_completed``), ``VoidPayment``
  before release. No minions run: statuses move by command, action or the sandbox control.
- The search index lag (``search_lag_seconds``) standing for the IncrementalIndexMinion, the
  filter subset (``and``-joined ``eq ne gt ge lt le``), and the page caps (``take``, ``top`` at
  most 100).

What the integration's own engine plugin adds (docs/xc.md: a merchant deploys it; all of it is
synthesised here, as no such plugin is published):

- ``StripePaymentComponent`` on orders (``T_STRIPE_ORDER``), shown in the ``StripePayment``
  entity view and written by its ``EditStripePayment`` action: the payment state, the Stripe ids
  and the annotations (dispute, fraud review, refund status, fulfilment). Each property is text;
  ``FraudReview``, ``Fulfillment`` and ``RefundRequests`` carry JSON text, which the plugin
  stores as objects. An empty value removes the field. ``RequestStripeRefund`` (properties
  ``RequestId``, ``Amount``, ``Reason``) appends a refund request, as customer service does in
  Business Tools or an RMA block does when the return is accepted.
- ``StripeCustomerComponent`` on customers (``T_STRIPE_CUSTOMER``), view ``StripeCustomer``,
  action ``EditStripeCustomer``: the linked Stripe customer id (``CustomerId``).
- ``AddCustomer`` takes an ``AccountNumber``: the new customer's id is then
  ``Entity-Customer-{AccountNumber}`` (how the integration creates customers with ids of its
  own choosing; the engine's own customers get a generated one).
- ``AddPayment`` takes the payment's billing party (``BillingFirstName``, ``BillingLastName``,
  ``BillingEmail``, ``BillingCountryCode``), and ``RefundPayment`` is allowed in the statuses of
  the plugin's refund policy (``refundable_statuses``: ``Completed`` as in the Braintree sample,
  plus ``Released``, ``Cancelled`` and the integration's ``Paid``, ``PartiallyRefunded``,
  ``Refunded``).
- ``concurrent_edit(entity_id)`` (and ``POST /_sandbox/xc/concurrent_edit``): the next action
  on the entity finds it changed by someone else in between (its Version bumped), as a
  Business Tools user editing the order at the same moment would.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.clock import Clock, parse_instant
from sandbox.common import (
    ExactJSONResponse,
    SandboxApp,
    copy_json,
    dumps_exact,
    install_sandbox_controls,
    loads_exact,
)

# --- credentials, shops, vocabulary ------------------------------------------------------------

# Obviously fake credentials the simulator accepts (the tests and the demo use these).
XC_ADMIN_USER = "sitecore\\admin"
XC_ADMIN_PASSWORD = "sandbox-xc-admin-password-not-real"
XC_PUBLIC_CLIENT_ID = "postman-api"
XC_CLIENT_ID = "sandbox-xc-client"
XC_CLIENT_SECRET = "sandbox-xc-client-secret-not-real"
COMMERCE_ROLE = "sitecore\\Commerce Business User"
ENGINE_SCOPE = "EngineAPI"
DEFAULT_USERS: dict[str, dict[str, Any]] = {
    XC_ADMIN_USER: {
        "password": XC_ADMIN_PASSWORD,
        "roles": (COMMERCE_ROLE, "sitecore\\Commerce Administrator"),
    },
}
DEFAULT_CLIENTS: dict[str, dict[str, Any]] = {
    XC_PUBLIC_CLIENT_ID: {
        "secret": None,
        "grants": ("password",),
        "scopes": ("openid", ENGINE_SCOPE, "postman_api"),
        "roles": (),
    },
    XC_CLIENT_ID: {
        "secret": XC_CLIENT_SECRET,
        "grants": ("client_credentials",),
        "scopes": (ENGINE_SCOPE,),
        "roles": (COMMERCE_ROLE,),
    },
}
DEFAULT_SHOPS = ("CommerceEngineDefaultStorefront", "Storefront")
DEFAULT_ENVIRONMENTS = ("HabitatAuthoring", "HabitatShops", "HabitatMinions")
DEFAULT_DOMAIN = "CommerceUsers"
CONTEXT_HEADERS = (
    "ShopName", "ShopperId", "Language", "Currency", "Environment", "GeoLocation", "CustomerId",
)  # fmt: skip

ORDER_PREFIX = "Entity-Order-"
CUSTOMER_PREFIX = "Entity-Customer-"
ACTIVITY_PREFIX = "Entity-SalesActivity-"
STATUSES = (
    "Pending", "OnHold", "Released", "Completed", "Problem", "WaitingForAvailability", "Cancelled",
)  # fmt: skip
STATUS_LISTS = {f"{status}Orders": status for status in STATUSES}
NOT_CANCELLABLE = frozenset({"Released", "Completed", "Cancelled"})
NOT_VOIDABLE = NOT_CANCELLABLE
ACCOUNT_STATUSES = ("ActiveAccount", "InactiveAccount", "RequiresApproval")
STATUS_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")

ORDER_TYPE = "Sitecore.Commerce.Plugin.Orders.Order, Sitecore.Commerce.Plugin.Orders"
CUSTOMER_TYPE = "Sitecore.Commerce.Plugin.Customers.Customer, Sitecore.Commerce.Plugin.Customers"
ACTIVITY_TYPE = "Sitecore.Commerce.Plugin.Orders.SalesActivity, Sitecore.Commerce.Plugin.Orders"
T_ORDER = "#Sitecore.Commerce.Plugin.Orders.Order"
T_CUSTOMER = "#Sitecore.Commerce.Plugin.Customers.Customer"
T_ACTIVITY = "#Sitecore.Commerce.Plugin.Orders.SalesActivity"
T_LINE = "#Sitecore.Commerce.Plugin.Carts.CartLineComponent"
T_PRODUCT = "#Sitecore.Commerce.Plugin.Carts.CartProductComponent"
T_VARIATION = "#Sitecore.Commerce.Plugin.Catalog.ItemVariationSelectedComponent"
T_PAYMENT = "#Sitecore.Commerce.Plugin.Payments.FederatedPaymentComponent"
T_FULFILLMENT = "#Sitecore.Commerce.Plugin.Fulfillment.PhysicalFulfillmentComponent"
T_CONTACT = "#Sitecore.Commerce.Core.ContactComponent"
T_MEMBERSHIPS = "#Sitecore.Commerce.Plugin.ManagedLists.ListMembershipsComponent"
T_CUSTOMER_DETAILS = "#Sitecore.Commerce.Plugin.Customers.CustomerDetailsComponent"
T_PARTY = "#Sitecore.Commerce.Core.Party"
T_REFERENCE = "#Sitecore.Commerce.Core.EntityReference"
T_ADJUSTMENT = "#Sitecore.Commerce.Plugin.Pricing.CartLevelAwardedAdjustment"
T_VIEW = "#Sitecore.Commerce.EntityViews.EntityView"
T_MESSAGE = "#Sitecore.Commerce.Core.CommandMessage"
PARTY_FIELDS = (
    "ExternalId", "AddressName", "FirstName", "LastName", "Email", "Organization", "Address1",
    "Address2", "City", "State", "StateCode", "Country", "CountryCode", "ZipPostalCode",
    "PhoneNumber", "IsPrimary",
)  # fmt: skip

# The integration's engine plugin (see the docstring): components, views, actions, fields.
T_STRIPE_ORDER = "#Plugin.Stripe.StripePaymentComponent"
T_STRIPE_CUSTOMER = "#Plugin.Stripe.StripeCustomerComponent"
STRIPE_ORDER_VIEW = "StripePayment"
STRIPE_ORDER_ACTION = "EditStripePayment"
STRIPE_REFUND_ACTION = "RequestStripeRefund"
STRIPE_CUSTOMER_VIEW = "StripeCustomer"
STRIPE_CUSTOMER_ACTION = "EditStripeCustomer"
STRIPE_ORDER_FIELDS = (
    "PaymentStatus", "PaymentIntentId", "ChargeId", "PaymentFailureReason", "DisputeStatus",
    "DisputeId", "DisputeAmount", "DisputeReason", "DisputeEvidenceDueBy", "LastRefundStatus",
    "LastRefundFailureReason", "FraudReview", "Fulfillment", "RefundRequests", "PaymentHold",
)  # fmt: skip
STRIPE_JSON_FIELDS = frozenset({"FraudReview", "Fulfillment", "RefundRequests"})
STRIPE_CUSTOMER_FIELDS = ("CustomerId",)
DEFAULT_REFUNDABLE_STATUSES = (
    "Completed", "Released", "Cancelled", "Paid", "PartiallyRefunded", "Refunded",
)  # fmt: skip
BILLING_PROPERTIES = {
    "BillingFirstName": "FirstName",
    "BillingLastName": "LastName",
    "BillingEmail": "Email",
    "BillingCountryCode": "CountryCode",
}

# How this simulator words a stale Version and a duplicate customer (see the docstring).
VERSION_CONFLICT_TERM_KEY = "EntityVersionMismatch"
DUPLICATE_CUSTOMER_TERM_KEY = "AccountNameAlreadyInUse"
MAX_TAKE = 100
MAX_SEARCH_TOP = 100
SEARCH_FIELDS = {
    "OrdersScope": (
        "EntityId", "FriendlyId", "OrderConfirmationId", "Status", "CustomerId", "Email",
        "OrderPlacedDate", "DateCreated", "DateUpdated",
    ),
    "CustomersScope": (
        "EntityId", "FriendlyId", "Email", "FirstName", "LastName", "AccountStatus",
        "DateCreated", "DateUpdated",
    ),
}  # fmt: skip
DATE_FIELDS = frozenset({"OrderPlacedDate", "DateCreated", "DateUpdated"})


# --- errors, as XC words them --------------------------------------------------------------------


class EngineError(Exception):
    """A request the engine refuses outright: an HTTP error with one ``CommandMessage``."""

    def __init__(self, status: int, code: str, term_key: str, text: str) -> None:
        super().__init__(text)
        self.status, self.code, self.term_key, self.text = status, code, term_key, text


class CommandRefused(Exception):
    """A command its pipeline refused: HTTP 200, ``ResponseCode`` ``Error``, the message."""

    def __init__(self, code: str, term_key: str, text: str) -> None:
        super().__init__(text)
        self.code, self.term_key, self.text = code, term_key, text


class AuthRefused(Exception):
    """401 (no valid token for the engine) or 403 (no Commerce role): no body, as ASP.NET's
    authentication and authorization middleware answer."""

    def __init__(self, status: int, challenge: str | None = None) -> None:
        super().__init__(status)
        self.status, self.challenge = status, challenge


class OAuthError(Exception):
    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(description or error)
        self.error, self.description = error, description


def not_found(key: str) -> CommandRefused:
    return CommandRefused("ValidationError", "EntityNotFound", f"Entity {key} was not found.")


def missing_entity(key: str) -> EngineError:
    """A read of an entity that does not exist: 404 with the engine's EntityNotFound."""
    return EngineError(404, "ValidationError", "EntityNotFound", f"Entity {key} was not found.")


def missing_property(name: str) -> CommandRefused:
    return CommandRefused(
        "ValidationError",
        "InvalidOrMissingPropertyValue",
        f"Invalid or missing value for property '{name}'.",
    )


def invalid_state(expected: str, status: str) -> CommandRefused:
    return CommandRefused(
        "ValidationError",
        "InvalidOrderState",
        f"Expected order in '{expected}' status but order was in '{status}' status",
    )


def bad_query(text: str = "Bad Request - Error in query syntax.") -> EngineError:
    return EngineError(400, "Error", "InvalidQuery", text)


# --- small helpers -------------------------------------------------------------------------------


def stamp(instant: datetime) -> str:
    """A date as the engine writes DateTimeOffsets: seven fractional digits, ``+00:00``."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0+00:00"


def money(amount: Decimal, currency: str) -> dict:
    return {"CurrencyCode": currency, "Amount": amount}


def _amount(value: Any, name: str, *, positive: bool = False) -> Decimal:
    """A JSON number (parsed as Decimal) from a body: never a float, a bool or text."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise EngineError(400, "ValidationError", "InvalidAmount", f"{name} must be a number")
    amount = Decimal(value)
    if not amount.is_finite() or (positive and amount <= 0):
        raise EngineError(400, "ValidationError", "InvalidAmount", f"{name} must be positive")
    return amount


def _decimal_text(value: Any) -> Decimal | None:
    """An entity-view property value (text) as a positive Decimal, else None."""
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and amount > 0 else None


def _hex() -> str:
    return uuid.uuid4().hex


def parse_key(literal: str) -> str:
    """An OData string key literal ``'..'`` (quotes doubled inside) to its value."""
    if len(literal) < 2 or literal[0] != "'" or literal[-1] != "'":
        raise bad_query()
    inner = literal[1:-1]
    # Inside the quotes a quote is only ever doubled.
    if "'" in inner.replace("''", ""):
        raise bad_query()
    return inner.replace("''", "'")


_ARG = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*('(?:[^']|'')*'|-?\d+)\s*(?:,|$)")


def parse_args(text: str) -> dict[str, Any]:
    """OData function parameters ``id='x',skip=0``: strings unquoted, integers as int."""
    args: dict[str, Any] = {}
    position = 0
    while position < len(text):
        match = _ARG.match(text, position)
        if match is None or match.end() == position:
            raise bad_query()
        name, value = match.group(1), match.group(2)
        args[name] = parse_key(value) if value.startswith("'") else int(value)
        position = match.end()
    return args


def parse_expand(text: str | None) -> dict[str, dict]:
    """``Lines($expand=ChildComponents),Components`` as ``{"Lines": {"ChildComponents": {}},
    "Components": {}}``."""
    if not text:
        return {}
    position = 0
    invalid = "The query specified in the URI is not valid."

    def items(stop: str | None) -> dict[str, dict]:
        nonlocal position
        found: dict[str, dict] = {}
        while position < len(text):
            match = re.compile(r"\s*([A-Za-z_]\w*)\s*").match(text, position)
            if match is None:
                raise bad_query(invalid)
            name, position = match.group(1), match.end()
            children: dict[str, dict] = {}
            if text.startswith("(", position):
                position += 1
                option = re.compile(r"\$expand=").match(text, position)
                if option is None:
                    raise bad_query(invalid)
                position = option.end()
                children = items(")")
                if not text.startswith(")", position):
                    raise bad_query(invalid)
                position += 1
            found[name] = children
            if text.startswith(",", position):
                position += 1
                continue
            if stop is not None and text.startswith(stop, position):
                return found
            if position < len(text):
                raise bad_query(invalid)
        return found

    return items(None)


def render(entity: Mapping[str, Any], expand: Mapping[str, dict]) -> dict:
    """An entity as OData answers it: ``Components`` and ``Lines`` only when expanded, a
    line's ``ChildComponents`` only when the lines are expanded with them."""
    shown = copy_json(dict(entity))
    for navigation in ("Components", "Lines", "Items"):
        if navigation in shown and navigation not in expand:
            del shown[navigation]
    if "Lines" in shown and "ChildComponents" not in expand.get("Lines", {}):
        for line in shown["Lines"]:
            line.pop("ChildComponents", None)
    return shown


def party(body: Mapping[str, Any] | None) -> dict:
    given = dict(body or {})
    unknown = sorted(set(given) - set(PARTY_FIELDS))
    if unknown:
        raise EngineError(400, "ValidationError", "InvalidParty", f"unknown field(s) {unknown}")
    return {
        "@odata.type": T_PARTY,
        **dict.fromkeys(PARTY_FIELDS, ""),
        "IsPrimary": False,
        **given,
        "Policies": [],
    }


def reference(target: str, name: str = "") -> dict:
    return {
        "@odata.type": T_REFERENCE,
        "EntityTarget": target,
        "Name": name,
        "EntityTargetUniqueId": str(uuid.uuid4()),
    }


def _filter_tokens(text: str) -> list[str]:
    return re.findall(r"'(?:[^']|'')*'|\S+", text)


@dataclass(frozen=True)
class _Clause:
    field: str
    op: str
    value: Any


def parse_filter(text: str, scope: str) -> list[_Clause]:
    """The subset of the search filter syntax the simulator understands: ``Field op value``
    clauses joined by ``and``; ``'text'`` values, dates and numbers bare."""
    if not text or not text.strip():
        return []
    tokens = _filter_tokens(text)
    clauses: list[_Clause] = []
    fields = SEARCH_FIELDS[scope]
    while tokens:
        if len(tokens) < 3:
            raise EngineError(400, "ValidationError", "InvalidFilter", f"Invalid filter: {text}")
        name, op, raw = tokens[:3]
        del tokens[:3]
        if name not in fields:
            raise EngineError(
                400, "ValidationError", "InvalidFilter", f"'{name}' is not filterable in {scope}."
            )
        if op.lower() not in ("eq", "ne", "gt", "ge", "lt", "le"):
            raise EngineError(400, "ValidationError", "InvalidFilter", f"Unknown operator {op}.")
        if raw.startswith("'"):
            value: Any = parse_key(raw)
        elif name in DATE_FIELDS:
            try:
                value = parse_instant(raw)
            except ValueError:
                raise EngineError(
                    400, "ValidationError", "InvalidFilter", f"'{raw}' is not a date."
                ) from None
        else:
            value = raw
        clauses.append(_Clause(name, op.lower(), value))
        if tokens:
            if tokens[0].lower() != "and":
                raise EngineError(
                    400,
                    "ValidationError",
                    "InvalidFilter",
                    f"Only 'and' joins filter clauses here, not '{tokens[0]}'.",
                )
            del tokens[0]
            if not tokens:
                raise EngineError(400, "ValidationError", "InvalidFilter", "Dangling 'and'.")
    return clauses


def _sort_key(document: Mapping[str, Any], field: str) -> tuple:
    value = document.get(field)
    if value is None:
        return (0, "")
    if field in DATE_FIELDS:
        return (1, parse_instant(value).timestamp())
    return (1, str(value).lower())


def _matches(document: Mapping[str, Any], clause: _Clause) -> bool:
    stored = document.get(clause.field)
    if stored is None:
        return False
    if clause.field in DATE_FIELDS:
        left: Any = parse_instant(stored)
        right: Any = clause.value
        if not isinstance(right, datetime):
            return False
    else:
        left, right = str(stored).lower(), str(clause.value).lower()
    return {
        "eq": left == right,
        "ne": left != right,
        "gt": left > right,
        "ge": left >= right,
        "lt": left < right,
        "le": left <= right,
    }[clause.op]


# --- state ---------------------------------------------------------------------------------------


@dataclass
class _Token:
    subject: str
    roles: frozenset[str]
    scopes: frozenset[str]
    expires_at: float  # time.monotonic(): token lifetimes run on real time, not the sim clock


class XCSimulator:
    """In-memory Commerce Engine plus Identity Server. Every public method is thread-safe."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        clients: Mapping[str, Mapping[str, Any]] | None = None,
        shops: Iterable[str] = DEFAULT_SHOPS,
        environments: Iterable[str] = DEFAULT_ENVIRONMENTS,
        token_lifetime_seconds: int = 3600,
        search_lag_seconds: float = 0,
        refund_requires_completed: bool = True,
        refundable_statuses: Iterable[str] = DEFAULT_REFUNDABLE_STATUSES,
    ) -> None:
        self.clock = clock or Clock()
        self.users = {k: dict(v) for k, v in (users or DEFAULT_USERS).items()}
        self.clients = {k: dict(v) for k, v in (clients or DEFAULT_CLIENTS).items()}
        self.shops = frozenset(shops)
        self.environments = frozenset(environments)
        self.token_lifetime_seconds = token_lifetime_seconds
        self.search_lag_seconds = search_lag_seconds
        # False: RefundPayment in any status (the policy is not enforced at all).
        self.refund_requires_completed = refund_requires_completed
        self.refundable_statuses = frozenset(refundable_statuses)
        self.lock = threading.RLock()
        self._tokens: dict[str, _Token] = {}
        self._headers_seen: deque[dict[str, str | None]] = deque(maxlen=2000)
        self.reset()

    def reset(self) -> None:
        """Forget orders, customers, sales activities, the index and the headers seen. Issued
        tokens stay valid, as they would across an engine's data being cleaned."""
        with self.lock:
            self._orders: dict[str, dict] = {}
            self._customers: dict[str, dict] = {}
            self._activities: dict[str, dict] = {}
            # scope -> entity id -> [(visible from, document)]
            self._index: dict[str, dict[str, list[tuple[datetime, dict]]]] = {
                scope: {} for scope in SEARCH_FIELDS
            }
            self._headers_seen.clear()
            # entity id -> how many more actions find it changed by someone else first
            self._concurrent_edits: dict[str, int] = {}

    def concurrent_edit(self, entity_id: str, times: int = 1) -> None:
        """The next ``times`` actions on the entity each find it edited by someone else between
        their GetEntityView and their DoUxAction (its Version bumped, DateUpdated moved)."""
        with self.lock:
            self._concurrent_edits[entity_id] = self._concurrent_edits.get(entity_id, 0) + times

    def close(self) -> None:
        """Nothing runs in the background."""

    # --- identity server -------------------------------------------------------------------

    def issue_token(self, form: Mapping[str, str]) -> dict:
        grant = form.get("grant_type", "")
        client = self.clients.get(form.get("client_id", ""))
        if client is None:
            raise OAuthError("invalid_client")
        if client.get("secret") is not None and form.get("client_secret") != client["secret"]:
            raise OAuthError("invalid_client")
        if grant not in ("password", "client_credentials"):
            raise OAuthError("unsupported_grant_type")
        if grant not in client["grants"]:
            raise OAuthError("unauthorized_client")
        requested = form.get("scope", "").split()
        allowed = set(client["scopes"])
        # Identity scopes (openid) need a user: not for client_credentials.
        if grant == "client_credentials":
            allowed.discard("openid")
        if not requested or not set(requested) <= allowed:
            raise OAuthError("invalid_scope")
        if grant == "password":
            user = self.users.get(form.get("username", ""))
            if user is None or user["password"] != form.get("password"):
                raise OAuthError("invalid_grant", "invalid_username_or_password")
            subject, roles = form["username"], frozenset(user["roles"])
        else:
            subject, roles = form["client_id"], frozenset(client.get("roles", ()))
        token = secrets.token_urlsafe(32)
        with self.lock:
            self._tokens[token] = _Token(
                subject, roles, frozenset(requested), time.monotonic() + self.token_lifetime_seconds
            )
        return {
            "access_token": token,
            "expires_in": self.token_lifetime_seconds,
            "token_type": "Bearer",
            "scope": " ".join(requested),
        }

    def revoke_tokens(self) -> None:
        """Every issued token stops working (an Identity Server restart with a new key)."""
        with self.lock:
            self._tokens.clear()

    def authorize(self, authorization: str | None) -> None:
        scheme, _, value = (authorization or "").partition(" ")
        with self.lock:
            token = self._tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None or time.monotonic() >= token.expires_at:
            raise AuthRefused(401, 'Bearer error="invalid_token"')
        if ENGINE_SCOPE not in token.scopes:
            raise AuthRefused(
                401, 'Bearer error="invalid_token", error_description="The audience is invalid"'
            )
        if COMMERCE_ROLE not in token.roles:
            raise AuthRefused(403)

    # --- the shop context ----------------------------------------------------------------------

    def context(self, route: str, headers: Mapping[str, str]) -> dict[str, str | None]:
        """Check the shop and environment headers and remember every context header sent."""
        seen = {name: headers.get(name) for name in CONTEXT_HEADERS}
        with self.lock:
            self._headers_seen.append({"route": route, **seen})
        shop = seen["ShopName"] or ""
        if shop not in self.shops:
            raise EngineError(400, "Error", "InvalidShop", f"Shop '{shop}' does not exist.")
        environment = seen["Environment"] or ""
        if environment not in self.environments:
            raise EngineError(
                400, "Error", "InvalidEnvironment", f"Environment '{environment}' does not exist."
            )
        return seen

    def headers_seen(self) -> list[dict[str, str | None]]:
        """The context headers of every engine request, oldest first (tests read these)."""
        with self.lock:
            return list(self._headers_seen)

    # --- index ---------------------------------------------------------------------------------

    def _index_entity(self, scope: str, entity: Mapping[str, Any]) -> None:
        """Queue the entity's document for the search index, ``search_lag_seconds`` from now:
        the IncrementalIndexMinion's refresh."""
        if scope == "OrdersScope":
            contact = self._component(entity, T_CONTACT) or {}
            document = {
                "EntityId": entity["Id"],
                "FriendlyId": entity["FriendlyId"],
                "OrderConfirmationId": entity["OrderConfirmationId"],
                "Status": entity["Status"],
                "CustomerId": contact.get("CustomerId"),
                "Email": contact.get("Email"),
                "OrderPlacedDate": entity["OrderPlacedDate"],
                "DateCreated": entity["DateCreated"],
                "DateUpdated": entity["DateUpdated"],
            }
        else:
            document = {name: entity.get(name) for name in SEARCH_FIELDS[scope]}
            document["EntityId"] = entity["Id"]
        now = self.clock.now()
        visible_from = datetime.fromtimestamp(now.timestamp() + self.search_lag_seconds, UTC)
        entries = self._index[scope].setdefault(entity["Id"], [])
        entries.append((visible_from, document))
        # Keep the newest document already visible and any still pending.
        shown = [i for i, (since, _) in enumerate(entries) if since <= now]
        if len(shown) > 1:
            del entries[: shown[-1]]

    def search(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise EngineError(400, "Error", "InvalidRequest", "The search must be a JSON object.")
        scope = body.get("scope")
        if scope not in SEARCH_FIELDS:
            raise EngineError(
                400, "Error", "InvalidSearchScope", f"Search scope '{scope}' was not found."
            )
        skip, top = body.get("skip", 0), body.get("top", 10)
        for name, value, low, high in (("skip", skip, 0, None), ("top", top, 1, MAX_SEARCH_TOP)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < low
                or (high is not None and value > high)
            ):
                raise EngineError(
                    400,
                    "ValidationError",
                    "InvalidOrMissingPropertyValue",
                    f"Invalid or missing value for property '{name}'.",
                )
        clauses = parse_filter(body.get("filter") or "", scope)
        order_by = self._order_by(body.get("orderBy") or "", scope)
        term = str(body.get("term") or "*")
        with self.lock:
            now = self.clock.now()
            documents = []
            for entries in self._index[scope].values():
                visible = [doc for since, doc in entries if since <= now]
                if visible:
                    documents.append(copy_json(visible[-1]))
        documents = [
            d
            for d in documents
            if all(_matches(d, c) for c in clauses)
            and (term == "*" or any(term.lower() in str(v).lower() for v in d.values()))
        ]
        for field, descending in reversed(order_by):
            documents.sort(key=lambda d, f=field: _sort_key(d, f), reverse=descending)
        return {
            "TotalItemCount": len(documents),
            "Documents": documents[skip : skip + top],
        }

    @staticmethod
    def _order_by(text: str, scope: str) -> list[tuple[str, bool]]:
        order: list[tuple[str, bool]] = []
        for part in (p.strip() for p in text.split(",") if p.strip()):
            field, _, direction = part.partition(" ")
            direction = direction.strip().lower() or "asc"
            if field not in SEARCH_FIELDS[scope] or direction not in ("asc", "desc"):
                raise EngineError(
                    400, "ValidationError", "InvalidFilter", f"Invalid orderBy: {part}"
                )
            order.append((field, direction == "desc"))
        return order

    # --- orders --------------------------------------------------------------------------------

    @staticmethod
    def _component(entity: Mapping[str, Any], odata_type: str) -> dict | None:
        return next(
            (c for c in entity.get("Components") or () if c.get("@odata.type") == odata_type),
            None,
        )

    def _touch(self, entity: dict, scope: str) -> None:
        """A write: the next Version, a new DateUpdated, a document for the index."""
        entity["Version"] += 1
        entity["DateUpdated"] = stamp(self.clock.now())
        self._index_entity(scope, entity)

    def _find_order(self, key: str) -> dict | None:
        order = self._orders.get(key) or self._orders.get(f"{ORDER_PREFIX}{key}")
        if order is None:
            order = next((o for o in self._orders.values() if o["FriendlyId"] == key), None)
        return order

    def _order_or_refuse(self, key: Any) -> dict:
        order = self._find_order(key) if isinstance(key, str) else None
        if order is None:
            raise not_found(str(key))
        return order

    def seed_order(self, body: Any) -> dict:
        """Add an order as a storefront's checkout (or an import) would have made it."""
        if not isinstance(body, dict):
            raise EngineError(400, "Error", "InvalidRequest", "The order must be a JSON object.")
        known = {
            "Id",
            "OrderConfirmationId",
            "Status",
            "Currency",
            "Lines",
            "Adjustments",
            "GrandTotal",
            "Customer",
            "ShippingParty",
            "OrderPlacedDate",
            "ShopName",
            "Payments",
        }
        unknown = sorted(set(body) - known)
        if unknown:
            raise EngineError(400, "Error", "InvalidRequest", f"Unknown field(s): {unknown}")
        currency = body.get("Currency")
        if not isinstance(currency, str) or not CURRENCY_PATTERN.fullmatch(currency):
            raise EngineError(400, "ValidationError", "InvalidCurrency", "Currency is required")
        lines_in = body.get("Lines")
        if not isinstance(lines_in, list) or not lines_in:
            raise EngineError(400, "Error", "OrderHasNoLines", "Can not create order, no lines")
        customer = body.get("Customer") or {}
        if not isinstance(customer, dict) or not customer.get("Email"):
            raise EngineError(
                400, "Error", "EmailIsRequired", "Can not create order, email address is required."
            )
        status = body.get("Status", "Pending")
        if not isinstance(status, str) or not STATUS_PATTERN.fullmatch(status):
            raise EngineError(400, "ValidationError", "InvalidStatus", f"Bad status {status!r}")
        with self.lock:
            order_id = body.get("Id") or f"{ORDER_PREFIX}{_hex()}"
            if not isinstance(order_id, str) or not order_id.startswith(ORDER_PREFIX):
                raise EngineError(400, "Error", "InvalidId", f"Id must start with {ORDER_PREFIX}")
            if order_id in self._orders:
                raise EngineError(
                    400, "ValidationError", "EntityAlreadyExists", f"Entity {order_id} exists."
                )
            placed = (
                stamp(parse_instant(body["OrderPlacedDate"]))
                if body.get("OrderPlacedDate")
                else stamp(self.clock.now())
            )
            lines = [self._line(line, currency, i) for i, line in enumerate(lines_in)]
            subtotal = sum((line["Totals"]["SubTotal"]["Amount"] for line in lines), Decimal(0))
            adjustments = [self._adjustment(a, currency) for a in body.get("Adjustments") or []]
            adjusted = sum((a["Adjustment"]["Amount"] for a in adjustments), Decimal(0))
            grand = (
                _amount(body["GrandTotal"], "GrandTotal")
                if body.get("GrandTotal") is not None
                else subtotal + adjusted
            )
            customer_id = customer.get("CustomerId") or str(uuid.uuid4())
            registered = customer_id in self._customers
            contact = {
                "@odata.type": T_CONTACT,
                "Id": _hex(),
                "Name": "",
                "Comments": "",
                "Policies": [],
                "ChildComponents": [],
                "Currency": currency,
                "Language": "en-US",
                "Email": customer["Email"],
                "CustomerId": customer_id,
                "ShopperId": customer_id,
                "IsRegistered": registered,
            }
            fulfillment = {
                "@odata.type": T_FULFILLMENT,
                "Id": _hex(),
                "Name": "",
                "Comments": "",
                "Policies": [],
                "ChildComponents": [],
                "ShippingParty": party(body.get("ShippingParty")),
                "FulfillmentMethod": reference(str(uuid.uuid4()), "Ground"),
            }
            friendly = order_id.removeprefix(ORDER_PREFIX)
            memberships = ["Orders", "AuthenticatedOrders" if registered else "AnonymousOrders"]
            if registered:
                memberships.append(f"CustomerOrders-{customer_id}")
            order = {
                "@odata.type": T_ORDER,
                "Id": order_id,
                "FriendlyId": friendly,
                "Name": "Order",
                "DisplayName": "",
                "Version": 1,
                "EntityVersion": 1,
                "Published": True,
                "IsPersisted": True,
                "DateCreated": placed,
                "DateUpdated": placed,
                "ShopName": body.get("ShopName") or next(iter(sorted(self.shops))),
                "OrderConfirmationId": body.get("OrderConfirmationId") or f"{{{uuid.uuid4()}}}",
                "OrderPlacedDate": placed,
                "Status": status,
                "Totals": {
                    "SubTotal": money(subtotal, currency),
                    "AdjustmentsTotal": money(adjusted, currency),
                    "GrandTotal": money(grand, currency),
                    "PaymentsTotal": money(Decimal(0), currency),
                },
                "Adjustments": adjustments,
                "SalesActivity": [],
                "Policies": [],
                "Lines": lines,
                "Components": [
                    contact,
                    fulfillment,
                    {
                        "@odata.type": T_MEMBERSHIPS,
                        "Id": _hex(),
                        "Name": "",
                        "Comments": "",
                        "Policies": [],
                        "ChildComponents": [],
                        "Memberships": memberships,
                    },
                ],
            }
            for payment in body.get("Payments") or []:
                self._attach_payment(order, self._payment_from_seed(payment, currency), "Pending")
            self._orders[order_id] = order
            self._index_entity("OrdersScope", order)
            return copy_json(order)

    def _line(self, body: Any, currency: str, index: int) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("ItemId"), str):
            raise EngineError(400, "Error", "InvalidLine", f"Lines[{index}] needs an ItemId")
        quantity = _amount(body.get("Quantity", 1), f"Lines[{index}].Quantity", positive=True)
        price = _amount(body.get("UnitListPrice"), f"Lines[{index}].UnitListPrice")
        subtotal = quantity * price
        parts = body["ItemId"].split("|")
        children = [
            {
                "@odata.type": T_PRODUCT,
                "Id": parts[1] if len(parts) > 1 else parts[0],
                "Name": "",
                "Comments": "",
                "Policies": [],
                "ChildComponents": [],
                "DisplayName": body.get("ProductName") or "",
                "Catalog": parts[0],
            },
        ]
        if len(parts) > 2:
            children.append(
                {
                    "@odata.type": T_VARIATION,
                    "Id": _hex(),
                    "Name": "",
                    "Comments": "",
                    "Policies": [],
                    "ChildComponents": [],
                    "VariationId": parts[2],
                }
            )
        return {
            "@odata.type": T_LINE,
            "Id": _hex(),
            "Name": "",
            "Comments": "",
            "ItemId": body["ItemId"],
            "Quantity": quantity,
            "UnitListPrice": money(price, currency),
            "Totals": {
                "SubTotal": money(subtotal, currency),
                "AdjustmentsTotal": money(Decimal(0), currency),
                "GrandTotal": money(subtotal, currency),
                "PaymentsTotal": money(Decimal(0), currency),
            },
            "Adjustments": [],
            "Policies": [
                {
                    "@odata.type": "#Sitecore.Commerce.Plugin.Pricing.PurchaseOptionMoneyPolicy",
                    "PolicyId": _hex(),
                    "Models": [],
                    "SellPrice": money(price, currency),
                }
            ],
            "ChildComponents": children,
        }

    @staticmethod
    def _adjustment(body: Any, currency: str) -> dict:
        if not isinstance(body, dict) or not body.get("AdjustmentType"):
            raise EngineError(400, "Error", "InvalidAdjustment", "An adjustment needs a type")
        return {
            "@odata.type": T_ADJUSTMENT,
            "Name": body.get("Name") or body["AdjustmentType"],
            "DisplayName": body.get("Name") or body["AdjustmentType"],
            "AdjustmentType": body["AdjustmentType"],
            "Adjustment": money(_amount(body.get("Amount"), "Adjustment.Amount"), currency),
            "AwardingBlock": body.get("AwardingBlock") or "",
            "IsTaxable": False,
            "IncludeInGrandTotal": True,
        }

    @staticmethod
    def _payment_from_seed(body: Any, currency: str) -> dict:
        if not isinstance(body, dict):
            raise EngineError(400, "Error", "InvalidPayment", "A payment must be a JSON object")
        return {
            "Id": body.get("Id") or _hex(),
            "Amount": _amount(body.get("Amount"), "Payments.Amount", positive=True),
            "Currency": currency,
            "TransactionId": body.get("TransactionId") or "",
            "TransactionStatus": body.get("TransactionStatus") or "authorized",
            "PaymentMethodName": body.get("PaymentMethodName") or "Card",
            "PaymentInstrumentType": body.get("PaymentInstrumentType") or "credit_card",
            "MaskedNumber": body.get("MaskedNumber") or "",
            "CardType": body.get("CardType") or "",
            "ExpiresMonth": body.get("ExpiresMonth") or 0,
            "ExpiresYear": body.get("ExpiresYear") or 0,
        }

    def _payment_component(self, order: Mapping[str, Any], given: Mapping[str, Any]) -> dict:
        contact = self._component(order, T_CONTACT) or {}
        return {
            "@odata.type": T_PAYMENT,
            "Id": given["Id"],
            "Name": given["PaymentMethodName"],
            "Comments": "",
            "Policies": [],
            "ChildComponents": [],
            "Amount": money(given["Amount"], given["Currency"]),
            "PaymentMethod": reference(str(uuid.uuid4()), given["PaymentMethodName"]),
            "TransactionId": given["TransactionId"],
            "TransactionStatus": given["TransactionStatus"],
            "PaymentInstrumentType": given["PaymentInstrumentType"],
            "CardType": given["CardType"],
            "MaskedNumber": given["MaskedNumber"],
            "ExpiresMonth": given["ExpiresMonth"],
            "ExpiresYear": given["ExpiresYear"],
            "BillingParty": party(
                {"Email": contact.get("Email") or "", **(given.get("Billing") or {})}
            ),
        }

    def _payments(self, order: Mapping[str, Any]) -> list[dict]:
        return [c for c in order["Components"] if c.get("@odata.type") == T_PAYMENT]

    def _recompute_payments_total(self, order: dict) -> None:
        total = order["Totals"]["PaymentsTotal"]
        total["Amount"] = sum((p["Amount"]["Amount"] for p in self._payments(order)), Decimal(0))

    def _attach_payment(self, order: dict, given: Mapping[str, Any], activity_status: str) -> dict:
        component = self._payment_component(order, given)
        order["Components"].append(component)
        self._recompute_payments_total(order)
        self._activity(
            order,
            component,
            component["Amount"]["Amount"],
            name=component["Id"],
            status=activity_status,
            lists=("SalesCharges",),
        )
        return component

    def _activity(
        self,
        order: dict,
        payment: Mapping[str, Any],
        amount: Decimal,
        *,
        name: str,
        status: str,
        lists: Iterable[str],
        transaction_id: str | None = None,
    ) -> dict:
        """A ``SalesActivity``: the payment ledger's entry for a charge (positive) or a refund
        or void (negative), referencing the order and the customer."""
        contact = self._component(order, T_CONTACT) or {}
        now = stamp(self.clock.now())
        friendly = _hex()
        component = copy_json(payment)
        component["Amount"]["Amount"] = amount
        if transaction_id is not None:
            component["TransactionId"] = transaction_id
        activity = {
            "@odata.type": T_ACTIVITY,
            "Id": f"{ACTIVITY_PREFIX}{friendly}",
            "FriendlyId": friendly,
            "Name": name,
            "DisplayName": name,
            "Version": 1,
            "EntityVersion": 1,
            "Published": True,
            "IsPersisted": True,
            "DateCreated": now,
            "DateUpdated": now,
            "ActivityAmount": money(amount, payment["Amount"]["CurrencyCode"]),
            "PaymentStatus": status,
            "Order": reference(order["Id"]),
            "Customer": reference(contact.get("CustomerId") or ""),
            "Policies": [],
            "Components": [
                component,
                {
                    "@odata.type": T_MEMBERSHIPS,
                    "Id": _hex(),
                    "Name": "",
                    "Comments": "",
                    "Policies": [],
                    "ChildComponents": [],
                    "Memberships": [
                        "SalesActivities",
                        *lists,
                        f"OrderSalesActivities-{order['FriendlyId']}",
                    ],
                },
            ],
        }
        self._activities[activity["Id"]] = activity
        order["SalesActivity"].append(reference(activity["Id"], name))
        return activity

    def get_order(self, key: str, expand: Mapping[str, dict]) -> dict:
        with self.lock:
            order = self._find_order(key)
            if order is None:
                raise missing_entity(key)
            return render(order, expand)

    def set_status(self, key: Any, status: Any) -> dict:
        """``SetOrderStatus()`` and the sandbox control: any status, custom ones too."""
        if not isinstance(status, str) or not STATUS_PATTERN.fullmatch(status):
            raise missing_property("status")
        with self.lock:
            order = self._order_or_refuse(key)
            order["Status"] = status
            self._touch(order, "OrdersScope")
            return copy_json(order)

    def cancel(self, key: Any) -> dict:
        with self.lock:
            order = self._order_or_refuse(key)
            if order["Status"] in NOT_CANCELLABLE:
                raise invalid_state("Pending' or 'OnHold", order["Status"])
            order["Status"] = "Cancelled"
            self._touch(order, "OrdersScope")
            return copy_json(order)

    def sales_activities(self, key: str, expand: Mapping[str, dict]) -> list[dict]:
        with self.lock:
            order = self._find_order(key)
            if order is None:
                raise missing_entity(key)
            ids = [ref["EntityTarget"] for ref in order["SalesActivity"]]
            return [render(self._activities[i], expand) for i in ids if i in self._activities]

    # --- lists ---------------------------------------------------------------------------------

    def get_list(self, args: Mapping[str, Any], expand: Mapping[str, dict]) -> dict:
        list_id, entity_type = args.get("id"), args.get("type")
        skip, take = args.get("skip", 0), args.get("take", 10)
        if not isinstance(list_id, str) or not isinstance(entity_type, str):
            raise bad_query()
        if not isinstance(skip, int) or skip < 0 or not isinstance(take, int):
            raise bad_query()
        if not 1 <= take <= MAX_TAKE:
            raise EngineError(
                400,
                "ValidationError",
                "InvalidOrMissingPropertyValue",
                f"Invalid or missing value for property 'take' (1 to {MAX_TAKE}).",
            )
        with self.lock:
            expected, items = self._list(list_id)
            if expected is not None and entity_type != expected:
                raise EngineError(
                    400,
                    "Error",
                    "InvalidListType",
                    f"List '{list_id}' holds '{expected}', not '{entity_type}'.",
                )
            window = items[skip : skip + take]
            shown = {
                "@odata.type": "#Sitecore.Commerce.Core.CommerceList",
                "Id": list_id,
                "Name": list_id,
                "DisplayName": list_id,
                "Policies": [],
            }
            if "Items" in expand:
                shown["Items"] = [render(item, expand["Items"]) for item in window]
            return shown

    def _list(self, list_id: str) -> tuple[str | None, list[dict]]:
        if list_id == "Orders":
            return ORDER_TYPE, list(self._orders.values())
        if list_id in STATUS_LISTS:
            status = STATUS_LISTS[list_id]
            return ORDER_TYPE, [o for o in self._orders.values() if o["Status"] == status]
        if list_id == "Customers":
            return CUSTOMER_TYPE, list(self._customers.values())
        if list_id in ("SalesActivities", "SalesCharges", "SalesCredits") or list_id.startswith(
            "OrderSalesActivities-"
        ):
            members = [
                a
                for a in self._activities.values()
                if list_id in (self._component(a, T_MEMBERSHIPS) or {}).get("Memberships", ())
            ]
            return ACTIVITY_TYPE, members
        # XC lists are only names: one nothing was ever added to is empty.
        return None, []

    # --- customers -----------------------------------------------------------------------------

    def _find_customer(self, key: str) -> dict | None:
        customer = self._customers.get(key) or self._customers.get(f"{CUSTOMER_PREFIX}{key}")
        if customer is None:
            lowered = key.lower()
            customer = next(
                (c for c in self._customers.values() if c["Email"].lower() == lowered), None
            )
        return customer

    def get_customer(self, key: str, expand: Mapping[str, dict]) -> dict:
        with self.lock:
            customer = self._find_customer(key)
            if customer is None:
                raise missing_entity(key)
            return render(customer, expand)

    def _email_in_use(self, email: str, *, other_than: str | None = None) -> bool:
        lowered = email.lower()
        return any(
            c["Email"].lower() == lowered and c["Id"] != other_than
            for c in self._customers.values()
        )

    def create_customer(self, fields: Mapping[str, Any], *, seeded: bool = False) -> dict:
        email = fields.get("Email")
        if not isinstance(email, str) or "@" not in email:
            raise missing_property("Email")
        status = fields.get("AccountStatus") or "ActiveAccount"
        if status not in ACCOUNT_STATUSES:
            raise missing_property("AccountStatus")
        if not seeded and not fields.get("Password"):
            raise missing_property("Password")
        domain = fields.get("Domain") or DEFAULT_DOMAIN
        with self.lock:
            if self._email_in_use(email):
                raise CommandRefused(
                    "ValidationError",
                    DUPLICATE_CUSTOMER_TERM_KEY,
                    f"Account name '{domain}\\{email}' is already in use.",
                )
            account = fields.get("AccountNumber") or ""
            if account and not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", str(account)):
                raise missing_property("AccountNumber")
            friendly = str(account) or _hex()
            customer_id = fields.get("Id") or f"{CUSTOMER_PREFIX}{friendly}"
            if customer_id in self._customers:
                raise EngineError(
                    400, "ValidationError", "EntityAlreadyExists", f"Entity {customer_id} exists."
                )
            now = stamp(
                parse_instant(fields["DateCreated"])
                if fields.get("DateCreated")
                else self.clock.now()
            )
            customer = {
                "@odata.type": T_CUSTOMER,
                "Id": customer_id,
                "FriendlyId": customer_id.removeprefix(CUSTOMER_PREFIX),
                "Name": friendly,
                "DisplayName": "",
                "Version": 1,
                "EntityVersion": 1,
                "Published": True,
                "IsPersisted": True,
                "DateCreated": now,
                "DateUpdated": now,
                "AccountNumber": friendly,
                "AccountStatus": status,
                "Email": email,
                "FirstName": fields.get("FirstName") or "",
                "LastName": fields.get("LastName") or "",
                "LoginName": f"{domain}\\{email}",
                "UserName": f"{domain}\\{email}",
                "Domain": domain,
                "Language": fields.get("Language") or "en",
                "IsCompany": False,
                "Policies": [],
                "Components": [
                    {
                        "@odata.type": T_CUSTOMER_DETAILS,
                        "Id": _hex(),
                        "Name": "",
                        "Comments": "",
                        "Policies": [],
                        "ChildComponents": [],
                        "View": {
                            "@odata.type": T_VIEW,
                            "Name": "Details",
                            "Properties": [
                                {"Name": "PhoneNumber", "Value": fields.get("PhoneNumber") or ""}
                            ],
                        },
                    },
                    {
                        "@odata.type": T_MEMBERSHIPS,
                        "Id": _hex(),
                        "Name": "",
                        "Comments": "",
                        "Policies": [],
                        "ChildComponents": [],
                        "Memberships": ["Customers"],
                    },
                ],
            }
            self._customers[customer_id] = customer
            self._index_entity("CustomersScope", customer)
            return copy_json(customer)

    def _set_phone(self, customer: dict, phone: str) -> None:
        details = self._component(customer, T_CUSTOMER_DETAILS)
        if details is not None:
            for prop in details["View"]["Properties"]:
                if prop["Name"] == "PhoneNumber":
                    prop["Value"] = phone

    # --- entity views and actions --------------------------------------------------------------

    def _entity(self, entity_id: str) -> tuple[dict, str] | None:
        order = self._find_order(entity_id)
        if order is not None:
            return order, "OrdersScope"
        customer = self._customers.get(entity_id)
        if customer is not None:
            return customer, "CustomersScope"
        return None

    def entity_view(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise EngineError(400, "Error", "InvalidRequest", "The body must be a JSON object.")
        entity_id = body.get("entityId") or ""
        view_name = body.get("viewName") or ""
        action = body.get("forAction") or ""
        item_id = body.get("itemId") or ""
        properties: list[dict] = []
        with self.lock:
            found = self._entity(entity_id) if entity_id else None
            if entity_id and found is None:
                raise missing_entity(entity_id)
            if found is not None:
                properties.append(
                    _property("Version", str(found[0]["Version"]), hidden=True, kind="System.Int32")
                )
            entity = found[0] if found else {}
            if action == "AddPayment":
                totals = entity.get("Totals") or {}
                grand = totals.get("GrandTotal", {"Amount": Decimal(0), "CurrencyCode": ""})
                paid = totals.get("PaymentsTotal", {"Amount": Decimal(0)})
                balance = grand["Amount"] - paid["Amount"]
                properties += [
                    _property("Option", "Federated", read_only=True),
                    _property("PaymentOptionName", "Federated", hidden=True),
                    _property("Amount", format(balance, "f"), kind="System.Decimal"),
                    _property("Currency", grand["CurrencyCode"]),
                ] + [
                    _property(name, "")
                    for name in (
                        "PaymentId",
                        "TransactionId",
                        "TransactionStatus",
                        "PaymentMethodName",
                        "PaymentInstrumentType",
                        "MaskedNumber",
                        "CardType",
                        "ExpiresMonth",
                        "ExpiresYear",
                    )
                ]
            elif action == "RefundPayment":
                payment = next((p for p in self._payments(entity) if p["Id"] == item_id), None)
                if payment is not None:
                    properties += [
                        _property("Amount", format(payment["Amount"]["Amount"], "f")),
                        _property("Currency", payment["Amount"]["CurrencyCode"]),
                        _property("TransactionId", ""),
                    ]
            elif action in ("AddCustomer", "EditCustomer"):
                if action == "EditCustomer":
                    properties.append(
                        _property("AccountNumber", entity.get("AccountNumber", ""), read_only=True)
                    )
                for name in ("FirstName", "LastName", "Email", "AccountStatus", "Language"):
                    properties.append(_property(name, str(entity.get(name) or "")))
                properties.append(_property("PhoneNumber", self._phone(entity)))
                if action == "AddCustomer":
                    properties.append(_property("Password", ""))
                    properties.append(_property("AccountNumber", ""))
            elif action == STRIPE_ORDER_ACTION and found is not None:
                current = self._component(entity, T_STRIPE_ORDER) or {}
                properties += [
                    _property(name, _field_text(name, current.get(name)))
                    for name in STRIPE_ORDER_FIELDS
                ]
            elif action == STRIPE_REFUND_ACTION and found is not None:
                properties += [_property(n, "") for n in ("RequestId", "Amount", "Reason")]
            elif action == STRIPE_CUSTOMER_ACTION and found is not None:
                current = self._component(entity, T_STRIPE_CUSTOMER) or {}
                properties += [
                    _property(name, str(current.get(name) or "")) for name in STRIPE_CUSTOMER_FIELDS
                ]
        return {
            "@odata.type": T_VIEW,
            "Name": view_name,
            "Policies": [],
            "DisplayName": view_name,
            "EntityId": entity_id,
            "Action": action,
            "ItemId": item_id,
            "Properties": properties,
            "ChildViews": [],
            "DisplayRank": 500,
            "UiHint": "Flat",
        }

    def _phone(self, entity: Mapping[str, Any]) -> str:
        details = self._component(entity, T_CUSTOMER_DETAILS)
        if details is None:
            return ""
        return next(
            (p["Value"] for p in details["View"]["Properties"] if p["Name"] == "PhoneNumber"), ""
        )

    def do_action(self, body: Any) -> list[dict]:
        """``DoUxAction()``: the models the action produced; refusals raise
        ``CommandRefused``."""
        if not isinstance(body, dict) or not isinstance(body.get("Properties", []), list):
            raise EngineError(400, "Error", "InvalidRequest", "The body must be an EntityView.")
        action = body.get("Action") or ""
        entity_id = body.get("EntityId") or ""
        item_id = body.get("ItemId") or ""
        values = {
            p.get("Name"): p.get("Value")
            for p in body.get("Properties") or ()
            if isinstance(p, dict)
        }
        with self.lock:
            if action == "AddCustomer":
                customer = self.create_customer(values)
                return [
                    {
                        "@odata.type": "#Sitecore.Commerce.Plugin.Customers.CustomerAdded",
                        "Name": "",
                        "CustomerId": customer["Id"],
                    }
                ]
            found = self._entity(entity_id) if entity_id else None
            if found is None:
                raise not_found(entity_id or "''")
            entity, scope = found
            if self._concurrent_edits.get(entity["Id"]):
                # Someone else's edit lands between this caller's read and its write.
                self._concurrent_edits[entity["Id"]] -= 1
                self._touch(entity, scope)
            self._check_version(entity, values.get("Version"))
            handler = {
                ("OrdersScope", "HoldOrder"): self._hold,
                ("OrdersScope", "ReleaseOrder"): self._release,
                ("OrdersScope", "CancelOrder"): self._cancel_action,
                ("OrdersScope", "AddPayment"): self._add_payment,
                ("OrdersScope", "RefundPayment"): self._refund,
                ("OrdersScope", "VoidPayment"): self._void,
                ("OrdersScope", STRIPE_ORDER_ACTION): self._edit_stripe_order,
                ("OrdersScope", STRIPE_REFUND_ACTION): self._request_stripe_refund,
                ("CustomersScope", "EditCustomer"): self._edit_customer,
                ("CustomersScope", STRIPE_CUSTOMER_ACTION): self._edit_stripe_customer,
            }.get((scope, action))
            if handler is None:
                raise CommandRefused(
                    "ValidationError",
                    "InvalidAction",
                    f"Action '{action}' is not available for entity '{entity_id}'.",
                )
            models = handler(entity, item_id, values)
            self._touch(entity, scope)
            return models

    @staticmethod
    def _check_version(entity: Mapping[str, Any], sent: Any) -> None:
        """The first block of every action: the Version the view was read at must be the
        entity's; anything else would write over a change the caller has not seen."""
        if sent is None or not str(sent).strip().isdigit():
            raise missing_property("Version")
        if int(str(sent).strip()) != entity["Version"]:
            raise CommandRefused(
                "ValidationError",
                VERSION_CONFLICT_TERM_KEY,
                f"Entity '{entity['Id']}' was changed after version {sent} was read (it is at "
                f"version {entity['Version']}); read it again.",
            )

    def _hold(self, order: dict, item_id: str, values: Mapping[str, Any]) -> list[dict]:
        if order["Status"] != "Pending":
            raise invalid_state("Pending", order["Status"])
        order["Status"] = "OnHold"
        return []

    def _release(self, order: dict, item_id: str, values: Mapping[str, Any]) -> list[dict]:
        if order["Status"] != "OnHold":
            raise invalid_state("OnHold", order["Status"])
        order["Status"] = "Pending"
        return []

    def _cancel_action(self, order: dict, item_id: str, values: Mapping[str, Any]) -> list[dict]:
        if order["Status"] in NOT_CANCELLABLE:
            raise invalid_state("Pending' or 'OnHold", order["Status"])
        order["Status"] = "Cancelled"
        return []

    def _add_payment(self, order: dict, item_id: str, values: Mapping[str, Any]) -> list[dict]:
        if order["Status"] != "OnHold":
            raise invalid_state("OnHold", order["Status"])
        if (values.get("Option") or "Federated") != "Federated":
            raise missing_property("Option")
        amount = _decimal_text(values.get("Amount"))
        if amount is None:
            raise missing_property("Amount")
        currency = order["Totals"]["GrandTotal"]["CurrencyCode"]
        if (values.get("Currency") or currency) != currency:
            raise CommandRefused(
                "ValidationError",
                "InvalidCurrency",
                f"Currency '{values.get('Currency')}' is not the order's currency '{currency}'.",
            )
        payment_id = values.get("PaymentId") or _hex()
        if any(p["Id"] == payment_id for p in self._payments(order)):
            raise CommandRefused(
                "ValidationError",
                "PaymentAlreadyExists",
                f"Payment '{payment_id}' is on the order.",
            )
        given = {
            "Id": payment_id,
            "Amount": amount,
            "Currency": currency,
            "TransactionId": values.get("TransactionId") or "",
            "TransactionStatus": values.get("TransactionStatus") or "",
            "PaymentMethodName": values.get("PaymentMethodName") or "Federated",
            "PaymentInstrumentType": values.get("PaymentInstrumentType") or "",
            "MaskedNumber": values.get("MaskedNumber") or "",
            "CardType": values.get("CardType") or "",
            "ExpiresMonth": _int_or_zero(values.get("ExpiresMonth")),
            "ExpiresYear": _int_or_zero(values.get("ExpiresYear")),
            "Billing": {
                field: str(values[name])
                for name, field in BILLING_PROPERTIES.items()
                if values.get(name)
            },
        }
        self._attach_payment(order, given, "Settled")
        return []

    def _refund(self, order: dict, item_id: str, values: Mapping[str, Any]) -> list[dict]:
        if self.refund_requires_completed and order["Status"] not in self.refundable_statuses:
            raise invalid_state("Completed", order["Status"])
        payment = next((p for p in self._payments(order) if p["Id"] == item_id), None)
        if payment is None:
            raise CommandRefused(
                "Error", "InvalidOrMissingPropertyValue", "Invalid Payment value for refund."
            )
        held = payment["Amount"]["Amount"]
        amount = held if values.get("Amount") in (None, "") else _decimal_text(values["Amount"])
        if amount is None:
            raise missing_property("Amount")
        currency = payment["Amount"]["CurrencyCode"]
        if (values.get("Currency") or currency) != currency:
            raise CommandRefused(
                "ValidationError",
                "InvalidCurrency",
                f"Currency '{values.get('Currency')}' is not the payment's currency '{currency}'.",
            )
        if amount > held:
            raise CommandRefused(
                "Error",
                "IllegalRefundOperation",
                "Order Federated Payment amount is less than refund amount",
            )
        snapshot = copy_json(payment)
        if amount == held:
            order["Components"].remove(payment)
        else:
            payment["Amount"]["Amount"] = held - amount
        self._recompute_payments_total(order)
        self._activity(
            order,
            snapshot,
            -amount,
            name="Refund the Federated Payment",
            status="Completed",
            lists=("SalesCredits",),
            transaction_id=values.get("TransactionId") or _hex(),
        )
        return []

    def _void(self, order: dict, item_id: str, values: Mapping[str, Any]) -> list[dict]:
        if order["Status"] in NOT_VOIDABLE:
            raise invalid_state("Pending' or 'OnHold", order["Status"])
        payment = next((p for p in self._payments(order) if p["Id"] == item_id), None)
        if payment is None:
            raise CommandRefused(
                "Error", "InvalidOrMissingPropertyValue", "Invalid Payment value for void."
            )
        order["Components"].remove(payment)
        self._recompute_payments_total(order)
        self._activity(
            order,
            payment,
            -payment["Amount"]["Amount"],
            name="Void the Federated Payment",
            status="Completed",
            lists=(),
        )
        return []

    def _plugin_component(self, entity: dict, odata_type: str) -> dict:
        component = self._component(entity, odata_type)
        if component is None:
            component = {
                "@odata.type": odata_type,
                "Id": _hex(),
                "Name": "",
                "Comments": "",
                "Policies": [],
                "ChildComponents": [],
            }
            entity["Components"].append(component)
        return component

    def _set_plugin_fields(
        self, entity: dict, odata_type: str, fields: Iterable[str], values: Mapping[str, Any]
    ) -> None:
        """The plugin's edit action: each property sent is stored (the view echoes the others
        as they were); an empty one removes the field."""
        given = {k: v for k, v in values.items() if k not in ("Version", None)}
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise missing_property(unknown[0])
        component = self._plugin_component(entity, odata_type)
        for name, text in given.items():
            text = "" if text is None else str(text)
            if text == "":
                component.pop(name, None)
            elif name in STRIPE_JSON_FIELDS:
                try:
                    component[name] = loads_exact(text.encode())
                except ValueError:
                    raise missing_property(name) from None
            else:
                component[name] = text

    def _edit_stripe_order(self, order: dict, item_id: str, values: Mapping[str, Any]) -> list:
        self._set_plugin_fields(order, T_STRIPE_ORDER, STRIPE_ORDER_FIELDS, values)
        return []

    def _request_stripe_refund(self, order: dict, item_id: str, values: Mapping[str, Any]):
        request_id = str(values.get("RequestId") or "").strip()
        if not request_id:
            raise missing_property("RequestId")
        request: dict[str, Any] = {"ID": request_id}
        if str(values.get("Amount") or "").strip():
            amount = _decimal_text(values["Amount"])
            if amount is None:
                raise missing_property("Amount")
            request["Amount"] = amount
        if values.get("Reason"):
            request["Reason"] = str(values["Reason"])
        component = self._plugin_component(order, T_STRIPE_ORDER)
        requests = component.setdefault("RefundRequests", [])
        if any(r.get("ID") == request_id for r in requests):
            raise CommandRefused(
                "ValidationError",
                "RefundRequestExists",
                f"Refund request '{request_id}' is on the order.",
            )
        requests.append(request)
        return []

    def _edit_stripe_customer(self, customer: dict, item_id: str, values: Mapping[str, Any]):
        self._set_plugin_fields(customer, T_STRIPE_CUSTOMER, STRIPE_CUSTOMER_FIELDS, values)
        return []

    def _edit_customer(self, customer: dict, item_id: str, values: Mapping[str, Any]) -> list[dict]:
        if "Email" in values and values["Email"] != customer["Email"]:
            email = values["Email"]
            if not isinstance(email, str) or "@" not in email:
                raise missing_property("Email")
            if self._email_in_use(email, other_than=customer["Id"]):
                raise CommandRefused(
                    "ValidationError",
                    DUPLICATE_CUSTOMER_TERM_KEY,
                    f"Account name '{customer['Domain']}\\{email}' is already in use.",
                )
            customer["Email"] = email
        if "AccountStatus" in values:
            if values["AccountStatus"] not in ACCOUNT_STATUSES:
                raise missing_property("AccountStatus")
            customer["AccountStatus"] = values["AccountStatus"]
        for name in ("FirstName", "LastName", "Language"):
            if name in values and values[name] is not None:
                customer[name] = str(values[name])
        if values.get("PhoneNumber") is not None:
            self._set_phone(customer, str(values["PhoneNumber"]))
        return []


def _field_text(name: str, value: Any) -> str:
    """A field of the integration's component as its view shows it: text, JSON for objects."""
    if value is None or value == "":
        return ""
    if name in STRIPE_JSON_FIELDS:
        return dumps_exact(value)
    return str(value)


def _property(
    name: str,
    value: str,
    *,
    hidden: bool = False,
    read_only: bool = False,
    kind: str = "System.String",
) -> dict:
    return {
        "Name": name,
        "Policies": [],
        "DisplayName": name,
        "Value": value,
        "IsHidden": hidden,
        "OriginalType": kind,
        "IsReadOnly": read_only or hidden,
        "UiType": "",
        "IsRequired": False,
    }


def _int_or_zero(value: Any) -> int:
    text = str(value or "").strip()
    return int(text) if text.isdigit() else 0


# --- HTTP ----------------------------------------------------------------------------------------


# Injected answers as XC words an error: (Code, CommerceTermKey, Text).
INJECTED = {
    400: ("ValidationError", "InvalidRequest", "The request is invalid (injected)."),
    401: ("Error", "InvalidToken", "The access token is invalid or expired (injected)."),
    402: ("Error", "PaymentRequired", "Payment is required (injected)."),
    403: ("Error", "Forbidden", "The user has no role this call needs (injected)."),
    404: ("ValidationError", "EntityNotFound", "Entity was not found (injected)."),
    409: ("Error", "Conflict", "The entity is being changed by another request (injected)."),
    429: ("Error", "TooManyRequests", "Too many requests; retry later."),
}


def message(code: str, term_key: str, text: str, when: datetime) -> dict:
    return {
        "@odata.type": T_MESSAGE,
        "MessageDate": stamp(when),
        "Code": code,
        "Text": text,
        "CommerceTermKey": term_key,
    }


def create_app(
    *,
    clock: Clock | None = None,
    users: Mapping[str, Mapping[str, Any]] | None = None,
    clients: Mapping[str, Mapping[str, Any]] | None = None,
    shops: Iterable[str] = DEFAULT_SHOPS,
    environments: Iterable[str] = DEFAULT_ENVIRONMENTS,
    token_lifetime_seconds: int = 3600,
    search_lag_seconds: float = 0,
    refund_requires_completed: bool = True,
    refundable_statuses: Iterable[str] = DEFAULT_REFUNDABLE_STATUSES,
    seed: int | None = None,
) -> SandboxApp:
    """The XC simulator (Commerce Engine and Identity Server on one port) as an ASGI app; its
    state is ``app.state.simulator``. ``users`` maps a domain-qualified user name to
    ``{"password", "roles"}``; ``clients`` maps a client id to ``{"secret", "grants",
    "scopes", "roles"}``. ``seed`` seeds the fault injection."""
    sim = XCSimulator(
        clock=clock,
        users=users,
        clients=clients,
        shops=shops,
        environments=environments,
        token_lifetime_seconds=token_lifetime_seconds,
        search_lag_seconds=search_lag_seconds,
        refund_requires_completed=refund_requires_completed,
        refundable_statuses=refundable_statuses,
    )
    app = SandboxApp(title="Sitecore XC simulator")
    app.state.simulator = sim

    def fault_response(status: int) -> tuple[dict, dict[str, str]]:
        """An injected error as an engine ``CommandMessage``."""
        code, term, text = INJECTED.get(
            status, ("Error", "UnexpectedError", "An unexpected error occurred.")
        )
        body = {
            "@odata.context": "$metadata#Sitecore.Commerce.Core.CommandMessage",
            **message(code, term, text, sim.clock.now()),
        }
        body.pop("@odata.type")
        return body, {}

    install_sandbox_controls(
        app, name="xc", clock=sim.clock, reset=sim.reset, fault_response=fault_response, seed=seed
    )

    def metadata(request: Request, fragment: str) -> str:
        return f"{str(request.base_url).rstrip('/')}/api/$metadata#{fragment}"

    def answer(content: Any, status: int = 200) -> Response:
        return ExactJSONResponse(content, status_code=status)

    def odata(request: Request, fragment: str, content: Mapping[str, Any]) -> Response:
        return answer({"@odata.context": metadata(request, fragment), **content})

    def command(request: Request, models: Iterable[dict] = (), failed: Any = None) -> Response:
        messages = []
        if failed is not None:
            messages.append(message(failed.code, failed.term_key, failed.text, sim.clock.now()))
        return odata(
            request,
            "Sitecore.Commerce.Core.Commands.CommerceCommand",
            {
                "Id": _hex(),
                "Status": "RanToCompletion",
                "IsCanceled": False,
                "IsCompleted": True,
                "IsFaulted": False,
                "ResponseCode": "Error" if failed is not None else "Ok",
                "Messages": messages,
                "Models": list(models),
            },
        )

    @app.exception_handler(EngineError)
    async def engine_error(request: Request, exc: EngineError) -> Response:
        body = {
            "@odata.context": metadata(request, "Sitecore.Commerce.Core.CommandMessage"),
            **message(exc.code, exc.term_key, exc.text, sim.clock.now()),
        }
        body.pop("@odata.type")
        return answer(body, exc.status)

    @app.exception_handler(CommandRefused)
    async def command_refused(request: Request, exc: CommandRefused) -> Response:
        return command(request, failed=exc)

    @app.exception_handler(AuthRefused)
    async def auth_refused(request: Request, exc: AuthRefused) -> Response:
        headers = {"WWW-Authenticate": exc.challenge} if exc.challenge else {}
        return Response(status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def unknown_route(request: Request, exc: StarletteHTTPException) -> Response:
        return Response(status_code=exc.status_code)

    async def body_of(request: Request) -> Any:
        try:
            return loads_exact(await request.body())
        except ValueError as exc:
            raise EngineError(
                400, "Error", "InvalidRequest", f"The body is not JSON: {exc}"
            ) from None

    def engine(request: Request, route: str) -> dict[str, str | None]:
        """Every engine call: a valid token with a Commerce role, then the shop context."""
        sim.authorize(request.headers.get("authorization"))
        return sim.context(route, request.headers)

    def expand_of(request: Request) -> dict[str, dict]:
        return parse_expand(dict(parse_qsl(request.url.query)).get("$expand"))

    @app.post("/connect/token")
    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        try:
            return JSONResponse(sim.issue_token(form))
        except OAuthError as exc:
            error = {"error": exc.error}
            if exc.description:
                error["error_description"] = exc.description
            return JSONResponse(error, status_code=400)

    # --- sandbox controls (not counted, not faulted) ---------------------------------------------

    @app.post("/_sandbox/orders", include_in_schema=False)
    async def seed_order(request: Request) -> Response:
        return answer(sim.seed_order(await body_of(request)), 201)

    @app.post("/_sandbox/orders/{order_id}/status", include_in_schema=False)
    async def move_order(request: Request, order_id: str) -> Response:
        body = await body_of(request)
        try:
            status = body.get("status") if isinstance(body, dict) else None
            return answer(sim.set_status(order_id, status))
        except CommandRefused as exc:
            status_code = 404 if exc.term_key == "EntityNotFound" else 400
            raise EngineError(status_code, exc.code, exc.term_key, exc.text) from None

    @app.post("/_sandbox/customers", include_in_schema=False)
    async def seed_customer(request: Request) -> Response:
        body = await body_of(request)
        if not isinstance(body, dict):
            raise EngineError(400, "Error", "InvalidRequest", "The customer must be an object.")
        try:
            return answer(sim.create_customer(body, seeded=True), 201)
        except CommandRefused as exc:
            raise EngineError(400, exc.code, exc.term_key, exc.text) from None

    @app.post("/_sandbox/xc/concurrent_edit", include_in_schema=False)
    async def concurrent_edit(request: Request) -> Response:
        body = await body_of(request)
        entity = body.get("entity") if isinstance(body, dict) else None
        times = body.get("times", 1) if isinstance(body, dict) else None
        if not isinstance(entity, str) or isinstance(times, bool) or not isinstance(times, int):
            raise EngineError(400, "Error", "InvalidRequest", "Send {entity, times}.")
        sim.concurrent_edit(entity, times)
        return answer({"entity": entity, "times": times})

    @app.get("/_sandbox/xc/headers", include_in_schema=False)
    async def headers_seen() -> Response:
        return answer({"requests": sim.headers_seen()})

    # --- the shops API -------------------------------------------------------------------------

    @app.get("/api/Orders({key})")
    async def get_order(request: Request, key: str) -> Response:
        engine(request, "GET /api/Orders({key})")
        order = sim.get_order(parse_key(key), expand_of(request))
        return odata(request, "Orders/$entity", order)

    @app.get("/api/Customers({key})")
    async def get_customer(request: Request, key: str) -> Response:
        engine(request, "GET /api/Customers({key})")
        customer = sim.get_customer(parse_key(key), expand_of(request))
        return odata(request, "Customers/$entity", customer)

    @app.get("/api/GetOrderSalesActivities({args})")
    async def order_sales_activities(request: Request, args: str) -> Response:
        engine(request, "GET /api/GetOrderSalesActivities({args})")
        order_id = parse_args(args).get("orderId")
        if not isinstance(order_id, str):
            raise bad_query()
        activities = sim.sales_activities(order_id, expand_of(request))
        return odata(request, "SalesActivities", {"value": activities})

    @app.get("/api/GetList({args})")
    async def get_list(request: Request, args: str) -> Response:
        engine(request, "GET /api/GetList({args})")
        listed = sim.get_list(parse_args(args), expand_of(request))
        return odata(request, "Sitecore.Commerce.Core.CommerceList", listed)

    @app.put("/api/Search()")
    async def search(request: Request) -> Response:
        engine(request, "PUT /api/Search()")
        found = sim.search(await body_of(request))
        return odata(request, "Sitecore.Commerce.Plugin.Search.SearchResults", found)

    @app.put("/api/SetOrderStatus()")
    async def set_order_status(request: Request) -> Response:
        engine(request, "PUT /api/SetOrderStatus()")
        body = await body_of(request)
        if not isinstance(body, dict):
            raise missing_property("orderId")
        sim.set_status(body.get("orderId"), body.get("status"))
        return command(request)

    @app.put("/api/CancelOrder()")
    async def cancel_order(request: Request) -> Response:
        engine(request, "PUT /api/CancelOrder()")
        body = await body_of(request)
        if not isinstance(body, dict):
            raise missing_property("orderId")
        sim.cancel(body.get("orderId"))
        return command(request)

    @app.put("/api/GetEntityView()")
    async def get_entity_view(request: Request) -> Response:
        engine(request, "PUT /api/GetEntityView()")
        view = sim.entity_view(await body_of(request))
        return odata(request, "Sitecore.Commerce.EntityViews.EntityView", view)

    @app.put("/api/DoUxAction()")
    async def do_ux_action(request: Request) -> Response:
        engine(request, "PUT /api/DoUxAction()")
        return command(request, models=sim.do_action(await body_of(request)))

    return app
