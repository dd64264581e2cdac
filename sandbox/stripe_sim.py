"""Stripe API simulator: customers (with search), PaymentIntents, charges, refunds, disputes,
early fraud warnings, payouts, balance transactions, events and signed webhooks.

Speaks Stripe's wire format (form-encoded bracket params, Stripe's error bodies and headers,
idempotency keys, list and search result objects) so the official `stripe` SDK works against it
unchanged. Every object starts as a deep copy of Stripe's own published example
(`data/stripe_fixtures.json`) with the fields that matter overridden, so objects carry every field
real ones do.

Event delivery can be made to misbehave as Stripe's can (`configure_event_delivery`): events
listed up to N times, and visible in lists and delivered by webhook up to X seconds after their
`created` time, in shuffled order.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import random
import re
import secrets
import string as _string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox import stripe_params as sp
from sandbox.clock import Clock
from sandbox.common import SandboxApp, install_sandbox_controls
from sandbox.stripe_params import StripeError, invalid
from sandbox.stripe_post_payment import PostPaymentMixin
from sandbox.stripe_search import search_predicate
from sandbox.webhooks import Delivery, WebhookDispatcher

# The API version stripe-python 16.1 sends; objects are rendered in it whatever the request says.
API_VERSION = "2026-10-28.endive"
EVENT_RETENTION_SECONDS = 30 * 86400
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
FEE_RATE = Decimal("0.029")
FEE_FIXED = 30
PAYOUT_DELAY_DAYS = 2

FIXTURES: dict[str, dict] = json.loads(
    (Path(__file__).parent / "data" / "stripe_fixtures.json").read_text()
)["resources"]

_ALPHABET = _string.ascii_letters + _string.digits
KINDS = (
    "customer", "payment_intent", "charge", "balance_transaction", "event", "payment_method",
    "refund", "dispute", "early_fraud_warning", "payout",
)  # fmt: skip
# The `object` value of kinds whose name differs from it.
OBJECT_NAMES = {"early_fraud_warning": "radar.early_fraud_warning"}
KIND_OF_OBJECT = {name: kind for kind, name in OBJECT_NAMES.items()}
# How a missing object is named in Stripe's 404 message, and which param the error points at.
_MISSING = {
    "customer": ("customer", "customer"),
    "payment_intent": ("payment_intent", "intent"),
    "charge": ("charge", "charge"),
    "balance_transaction": ("balance_transaction", "id"),
    "event": ("event", "id"),
    "refund": ("refund", "refund"),
    "dispute": ("dispute", "dispute"),
    "early_fraud_warning": ("early_fraud_warning", "early_fraud_warning"),
    "payout": ("payout", "payout"),
}
# Which fields of which object can be expanded, and into what kind of object ("source": whichever
# object the id names).
EXPANDABLE = {
    "payment_intent": {
        "customer": "customer",
        "latest_charge": "charge",
        "payment_method": "payment_method",
    },
    "charge": {
        "balance_transaction": "balance_transaction",
        "customer": "customer",
        "payment_intent": "payment_intent",
    },
    "balance_transaction": {"source": "source"},
    "refund": {
        "balance_transaction": "balance_transaction",
        "charge": "charge",
        "payment_intent": "payment_intent",
    },
    "dispute": {"charge": "charge", "payment_intent": "payment_intent"},
    "early_fraud_warning": {"charge": "charge", "payment_intent": "payment_intent"},
    "payout": {"balance_transaction": "balance_transaction"},
}
SOURCE_KINDS = {"ch": "charge", "re": "refund", "dp": "dispute", "po": "payout"}
EMBEDDED_REFUNDS = 10  # a charge lists its newest refunds, as Stripe's `refunds` list does
MUTABLE_PI_STATUSES = (
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "requires_capture",
)
CONFIRMABLE_PI_STATUSES = ("requires_confirmation", "requires_payment_method", "requires_action")
CANCELABLE_PI_STATUSES = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
)


@dataclass(frozen=True)
class SimCard:
    """What one of Stripe's test payment methods (`pm_card_visa`, ...) does when confirmed."""

    brand: str
    last4: str
    fingerprint: str
    result: str  # approve | decline | authenticate | block
    risk_level: str = "normal"
    decline_code: str | None = None
    message: str = "Your card was declined."


TEST_CARDS = {
    "pm_card_visa": SimCard("visa", "4242", "Xt5EWLLDS7FJjR1c", "approve"),
    "pm_card_mastercard": SimCard("mastercard", "4444", "rOVP8UAbEx7EFWvA", "approve"),
    "pm_card_chargeDeclined": SimCard(
        "visa", "0002", "q3bM5PhE9CVWnd9M", "decline", decline_code="generic_decline"
    ),
    "pm_card_chargeDeclinedInsufficientFunds": SimCard(
        "visa",
        "9995",
        "sG0JzJqT3a1TZsEZ",
        "decline",
        decline_code="insufficient_funds",
        message="Your card has insufficient funds.",
    ),
    "pm_card_authenticationRequired": SimCard("visa", "3184", "eGHcZ1SpFZ3C2kZU", "authenticate"),
    "pm_card_riskLevelElevated": SimCard(
        "visa", "9235", "hF6mL0cQeP2wXb7N", "approve", risk_level="elevated"
    ),
    # Radar blocks look like an ordinary decline to the caller: decline_code is "fraudulent".
    "pm_card_radarBlock": SimCard(
        "visa", "0019", "Zq4Tn8VwR1yKd3Ls", "block", risk_level="highest", decline_code="fraudulent"
    ),
}
RISK_SCORES = {"normal": (5, 60), "elevated": (66, 74), "highest": (80, 97)}


@dataclass(frozen=True)
class RequestInfo:
    """The request behind a change, as events report it in `request`."""

    id: str | None
    idempotency_key: str | None = None


@dataclass
class _SavedResult:
    endpoint: str
    params: dict
    status: int
    body: dict
    request_id: str
    created: int


def _example(kind: str) -> dict:
    return copy.deepcopy(FIXTURES[OBJECT_NAMES.get(kind, kind)])


def _in_range(value: int, bounds: Mapping[str, int] | None) -> bool:
    if not bounds:
        return True
    checks = {
        "eq": value.__eq__,
        "gt": value.__gt__,
        "gte": value.__ge__,
        "lt": value.__lt__,
        "lte": value.__le__,
    }
    return all(checks[op](limit) for op, limit in bounds.items())


def _stable_number(text: str, low: int, high: int) -> int:
    digest = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    return low + digest % (high - low + 1)


def _address(given: Mapping[str, Any] | None) -> dict | None:
    if given is None:
        return None
    return {name: given.get(name) for name in sp.ADDRESS_FIELDS}


def _shipping(given: Mapping[str, Any] | None) -> dict | None:
    if given is None:
        return None
    return {
        "address": _address(given["address"]),
        "carrier": given.get("carrier"),
        "name": given["name"],
        "phone": given.get("phone"),
        "tracking_number": given.get("tracking_number"),
    }


def _merged_metadata(current: Mapping[str, str], given: Mapping[str, str] | None) -> dict:
    """Stripe's metadata update: keys merge, an empty value deletes a key, `metadata=""` clears."""
    if given is None:
        return {}
    merged = dict(current)
    for key, value in given.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"sandbox-search:{offset}".encode()).decode()


def _page_offset(token: str) -> int:
    try:
        prefix, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if prefix == "sandbox-search" and offset.isdigit():
            return int(offset)
    except (ValueError, UnicodeDecodeError):
        pass
    raise invalid(f"Invalid page: {token}", param="page")


def _unexpected_state(action: str, done: str, status: str, allowed: Iterable[str]) -> StripeError:
    return StripeError(
        400,
        f"You cannot {action} this PaymentIntent because it has a status of {status}. Only a "
        f"PaymentIntent with one of the following statuses may be {done}: {', '.join(allowed)}.",
        code="payment_intent_unexpected_state",
        store=True,
    )


# --- endpoint parameter specs ----------------------------------------------------------------

CUSTOMER_FIELDS = {
    "address": sp.ADDRESS,
    "description": sp.string(blank=True),
    "email": sp.EMAIL,
    "metadata": sp.METADATA,
    "name": sp.string(blank=True),
    "phone": sp.string(blank=True),
    "preferred_locales": sp.list_of(sp.string()),
    "shipping": sp.SHIPPING,
    "expand": sp.EXPAND,
}
CUSTOMER_LIST = {**sp.LIST_PARAMS, "created": sp.RANGE, "email": sp.string()}
PI_UPDATE = {
    "amount": sp.integer(),
    "capture_method": sp.enum("automatic", "automatic_async", "manual"),
    "currency": sp.CURRENCY,
    "customer": sp.string(blank=True),
    "description": sp.string(blank=True),
    "metadata": sp.METADATA,
    "payment_method": sp.string(),
    "receipt_email": sp.EMAIL,
    "setup_future_usage": sp.enum("off_session", "on_session", blank=True),
    "shipping": sp.SHIPPING,
    "statement_descriptor": sp.string(blank=True),
    "statement_descriptor_suffix": sp.string(blank=True),
    "transfer_group": sp.string(blank=True),
    "expand": sp.EXPAND,
}
PI_CREATE = {
    **PI_UPDATE,
    "amount": sp.integer(required=True),
    "currency": sp.Param("currency", required=True),
    "automatic_payment_methods": sp.obj(
        {"enabled": sp.boolean(required=True), "allow_redirects": sp.enum("always", "never")}
    ),
    "confirm": sp.boolean(),
    "payment_method_types": sp.list_of(sp.string()),
    "return_url": sp.string(),
}
PI_CONFIRM = {
    "capture_method": sp.enum("automatic", "automatic_async", "manual"),
    "off_session": sp.boolean(),
    "payment_method": sp.string(),
    "receipt_email": sp.EMAIL,
    "return_url": sp.string(),
    "shipping": sp.SHIPPING,
    "expand": sp.EXPAND,
}
PI_CAPTURE = {"amount_to_capture": sp.integer(), "metadata": sp.METADATA, "expand": sp.EXPAND}
PI_CANCEL = {
    "cancellation_reason": sp.enum("abandoned", "duplicate", "fraudulent", "requested_by_customer"),
    "expand": sp.EXPAND,
}
PI_RETRIEVE = {"client_secret": sp.string(), "expand": sp.EXPAND}
PI_LIST = {**sp.LIST_PARAMS, "created": sp.RANGE, "customer": sp.string()}
CHARGE_LIST = {
    **sp.LIST_PARAMS,
    "created": sp.RANGE,
    "customer": sp.string(),
    "payment_intent": sp.string(),
    "transfer_group": sp.string(),
}
BALANCE_TRANSACTION_LIST = {
    **sp.LIST_PARAMS,
    "created": sp.RANGE,
    "currency": sp.CURRENCY,
    "payout": sp.string(),
    "source": sp.string(),
    "type": sp.string(),
}
EVENT_LIST = {
    **sp.LIST_PARAMS,
    "created": sp.RANGE,
    "delivery_success": sp.boolean(),
    "type": sp.string(),
    "types": sp.list_of(sp.string(), max_items=20),
}
RETRIEVE = {"expand": sp.EXPAND}
CUSTOMER_SEARCH = {
    "query": sp.string(required=True),
    "limit": sp.integer(),
    "page": sp.string(),
    "expand": sp.EXPAND,
}
WEBHOOK_FIELDS = ("url", "secret", "enabled_events", "description")
EVENT_DELIVERY_FIELDS = ("max_copies", "max_delay_seconds", "seed")
WEBHOOK_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


class StripeSimulator(PostPaymentMixin):
    """In-memory Stripe account state. Every public method is safe to call from any thread.

    `search_lag_seconds` is how long a customer change takes to reach customer search, which
    Stripe documents as eventually consistent.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int | None = None,
        search_lag_seconds: float = 0,
    ) -> None:
        self.clock = clock or Clock()
        self.api_version = API_VERSION
        self.search_lag_seconds = search_lag_seconds
        self.lock = threading.RLock()
        self._seed = seed
        self.webhooks = WebhookDispatcher("stripe")
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self._rng = random.Random(self._seed)
            self._objects: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS}
            self._seq: dict[str, int] = {}
            self._counter = itertools.count()
            self._cards: dict[str, SimCard] = {}
            self._saved: dict[str, _SavedResult] = {}
            self._search_index: dict[str, list[tuple[float, dict]]] = {}
            self._payout_transactions: dict[str, list[str]] = {}
            self._paid_out: set[str] = set()
            self._bank_account: str | None = None
            self._webhook_endpoints: dict[str, dict] = {}
            self._visible_at: dict[str, float] = {}
            self._delivered: set[tuple[str, str]] = set()
            self.configure_event_delivery({})
            self.webhooks.clear()

    def close(self) -> None:
        """Stop delivering webhooks."""
        self.webhooks.close()

    # --- ids, storage, events ----------------------------------------------------------

    def token(self, length: int) -> str:
        with self.lock:
            return "".join(self._rng.choice(_ALPHABET) for _ in range(length))

    def new_id(self, prefix: str, length: int = 24) -> str:
        return f"{prefix}_{self.token(length)}"

    def new_request_id(self) -> str:
        return self.new_id("req", 14)

    _example = staticmethod(_example)
    _in_range = staticmethod(_in_range)
    _merge_metadata = staticmethod(_merged_metadata)

    @staticmethod
    def _helper_request() -> RequestInfo:
        """Changes made by Stripe or the card networks carry no API request in their events."""
        return RequestInfo(None)

    def _add(self, kind: str, obj: dict) -> None:
        self._objects[kind][obj["id"]] = obj
        self._seq[obj["id"]] = next(self._counter)

    def _get(self, kind: str, object_id: str) -> dict:
        found = self._objects[kind].get(object_id)
        if found is None or (kind == "event" and self._expired_event(found)):
            label, param = _MISSING[kind]
            raise StripeError(
                404, f"No such {label}: '{object_id}'", code="resource_missing", param=param
            )
        return found

    def _expired_event(self, event: dict) -> bool:
        return event["created"] < self.clock.unix() - EVENT_RETENTION_SECONDS

    def _order_key(self, obj: dict) -> tuple[int, int]:
        return obj["created"], self._seq[obj["id"]]

    def _emit(
        self,
        type_: str,
        obj: dict,
        request: RequestInfo,
        now: int,
        previous_attributes: dict | None = None,
    ) -> None:
        event = _example("event")
        data: dict[str, Any] = {"object": self._present(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        endpoints = [
            e
            for e in self._webhook_endpoints.values()
            if "*" in e["enabled_events"] or type_ in e["enabled_events"]
        ]
        event.update(
            id=self.new_id("evt"),
            api_version=self.api_version,
            created=now,
            data=data,
            livemode=False,
            pending_webhooks=len(endpoints),
            request={"id": request.id, "idempotency_key": request.idempotency_key},
            type=type_,
        )
        self._add("event", event)
        visible_at = float(now)
        if self._max_delay:
            visible_at += self._delivery_rng.uniform(0, self._max_delay)
            self._visible_at[event["id"]] = visible_at
        if endpoints:
            payload = json.dumps(event, indent=2).encode()
            for endpoint in endpoints:
                for _ in range(self._delivery_rng.randint(1, self._max_copies)):
                    self.webhooks.submit(self._delivery(event["id"], endpoint, payload, visible_at))

    # --- event delivery and webhooks ---------------------------------------------------

    def configure_event_delivery(self, body: Any) -> dict:
        """`{"max_copies": N, "max_delay_seconds": X, "seed": s}`: each new event is listed up
        to N times in a `/v1/events` page and webhooked 1..N times, and becomes visible (listed,
        delivered) a random 0..X simulator seconds after its `created` time. Deliveries due
        together go out shuffled while either is on. Omitted fields go back to their defaults
        (1, 0, the app's seed)."""
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        unknown = sorted(set(body) - set(EVENT_DELIVERY_FIELDS))
        if unknown:
            raise invalid(f"Received unknown parameter: {unknown[0]}", param=unknown[0])
        copies = body.get("max_copies", 1)
        delay = body.get("max_delay_seconds", 0)
        seed = body.get("seed", self._seed)
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise invalid("max_copies must be an integer >= 1.", param="max_copies")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise invalid("max_delay_seconds must be a number >= 0.", param="max_delay_seconds")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise invalid("seed must be an integer.", param="seed")
        with self.lock:
            self._max_copies, self._max_delay, self._delivery_seed = copies, float(delay), seed
            self._delivery_rng = random.Random(seed)
            misbehaving = copies > 1 or delay > 0
            self.webhooks.shuffle_rng = random.Random(seed) if misbehaving else None
            return self.event_delivery()

    def event_delivery(self) -> dict:
        with self.lock:
            return {
                "max_copies": self._max_copies,
                "max_delay_seconds": self._max_delay,
                "seed": self._delivery_seed,
            }

    def create_webhook_endpoint(self, body: Any) -> dict:
        """Test helper: register a URL that gets every new event (of `enabled_events`, default
        all) POSTed with a `Stripe-Signature` made with `secret` (default a generated
        `whsec_sandbox_...`). The secret is shown in this answer only, as Stripe does."""
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        unknown = sorted(set(body) - set(WEBHOOK_FIELDS))
        if unknown:
            raise invalid(f"Received unknown parameter: {unknown[0]}", param=unknown[0])
        url = body.get("url")
        if not isinstance(url, str) or not re.match(r"https?://", url):
            raise invalid("Invalid URL: url must be an http(s) URL.", param="url")
        events = body.get("enabled_events", ["*"])
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) and e for e in events)
        ):
            raise invalid(
                "enabled_events must be a list of event types or ['*'].", param="enabled_events"
            )
        secret = body.get("secret")
        if secret is not None and not (isinstance(secret, str) and secret):
            raise invalid("secret must be a non-empty string.", param="secret")
        with self.lock:
            endpoint = _example("webhook_endpoint")
            endpoint.update(
                id=self.new_id("we"),
                api_version=None,
                application=None,
                created=self.clock.unix(),
                description=body.get("description"),
                enabled_events=events,
                livemode=False,
                metadata={},
                secret=secret or f"whsec_sandbox_{self.token(32)}",
                status="enabled",
                url=url,
            )
            self._webhook_endpoints[endpoint["id"]] = endpoint
            return copy.deepcopy(endpoint)

    def list_webhook_endpoints(self) -> dict:
        with self.lock:
            shown = [
                {k: v for k, v in e.items() if k != "secret"}
                for e in self._webhook_endpoints.values()
            ]
        return {"object": "list", "data": shown, "has_more": False, "url": "/v1/webhook_endpoints"}

    def delete_webhook_endpoint(self, endpoint_id: str) -> dict:
        with self.lock:
            if self._webhook_endpoints.pop(endpoint_id, None) is None:
                raise StripeError(
                    404,
                    f"No such webhook endpoint: '{endpoint_id}'",
                    code="resource_missing",
                    param="id",
                )
        return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}

    def _delivery(
        self, event_id: str, endpoint: dict, payload: bytes, visible_at: float
    ) -> Delivery:
        secret, endpoint_id = endpoint["secret"], endpoint["id"]

        def build() -> tuple[bytes, dict[str, str]]:
            # Signed at send time with real time: receivers check `t` against their own clock.
            timestamp = int(time.time())
            signed = f"{timestamp}.".encode() + payload
            signature = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
            return payload, {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": f"t={timestamp},v1={signature}",
                "User-Agent": WEBHOOK_USER_AGENT,
            }

        def delivered() -> None:
            with self.lock:
                event = self._objects["event"].get(event_id)
                if event is not None and (event_id, endpoint_id) not in self._delivered:
                    self._delivered.add((event_id, endpoint_id))
                    event["pending_webhooks"] = max(event["pending_webhooks"] - 1, 0)

        return Delivery(
            url=endpoint["url"],
            label=event_id,
            build=build,
            is_due=lambda: self.clock.now().timestamp() >= visible_at,
            on_success=delivered,
        )

    # --- request execution with idempotency ---------------------------------------------

    def execute(
        self,
        endpoint: str,
        params: dict,
        request: RequestInfo,
        operation: Callable[[dict, RequestInfo], dict],
    ) -> tuple[int, dict, str | None]:
        """Run one API call; returns (status, body, original request id if replayed).

        Under one lock, so a second request with the same Idempotency-Key never runs alongside
        the first: it waits and gets the replay.
        """
        key = request.idempotency_key
        with self.lock:
            now = self.clock.unix()
            if key is not None:
                if len(key) > 255:
                    raise invalid(
                        "Invalid Idempotency-Key: it can be at most 255 characters long.",
                        param="Idempotency-Key",
                    )
                saved = self._saved.get(key)
                if saved is not None and now - saved.created >= IDEMPOTENCY_TTL_SECONDS:
                    del self._saved[key]
                    saved = None
                if saved is not None:
                    self._check_same_request(key, saved, endpoint, params)
                    return saved.status, copy.deepcopy(saved.body), saved.request_id
            try:
                status, body = 200, operation(params, request)
            except StripeError as exc:
                if key is None or not exc.store:
                    raise
                status, body = exc.status, exc.body(self.request_log_url(request.id))
            if key is not None:
                self._saved[key] = _SavedResult(
                    endpoint, params, status, copy.deepcopy(body), request.id or "", now
                )
            return status, body, None

    @staticmethod
    def _check_same_request(key: str, saved: _SavedResult, endpoint: str, params: dict) -> None:
        retry_hint = (
            f"Try using a key other than '{key}' if you meant to execute a different request."
        )
        if saved.endpoint != endpoint:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they were "
                f"first used for ('{saved.endpoint}' vs '{endpoint}'). {retry_hint}",
                type_="idempotency_error",
            )
        if saved.params != params:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. {retry_hint}",
                type_="idempotency_error",
            )

    def request_log_url(self, request_id: str | None) -> str:
        return f"https://dashboard.stripe.com/test/logs/{request_id}?t={self.clock.unix()}"

    # --- rendering: expansion and computed fields ---------------------------------------

    @staticmethod
    def _expansions(kind: str, paths: list[str] | None, *, listing: bool = False) -> list[list]:
        checked = []
        for path in paths or []:
            parts = path.split(".")
            if listing:
                if parts[0] != "data" or len(parts) < 2:
                    raise invalid(f"This property cannot be expanded ({path}).", param="expand")
                parts = parts[1:]
            current = kind
            for part in parts:
                target = EXPANDABLE.get(current, {}).get(part)
                if target is None:
                    raise invalid(f"This property cannot be expanded ({path}).", param="expand")
                current = target
            checked.append(parts)
        return checked

    def _render(self, obj: dict, expansions: list[list] = ()) -> dict:
        rendered = self._present(obj)
        for parts in expansions:
            self._expand(rendered, parts)
        return rendered

    def _present(self, obj: dict) -> dict:
        """An object as the API shows it now: fields that follow from other objects filled in."""
        shown = copy.deepcopy(obj)
        kind = shown["object"]
        if kind == "balance_transaction":
            # Funds become available at `available_on`; Stripe reports the status as of now.
            shown["status"] = (
                "available" if self.clock.unix() >= shown["available_on"] else "pending"
            )
        elif kind == "charge":
            refunds = sorted(
                (r for r in self._objects["refund"].values() if r["charge"] == shown["id"]),
                key=self._order_key,
                reverse=True,
            )
            shown["refunds"].update(
                data=[copy.deepcopy(r) for r in refunds[:EMBEDDED_REFUNDS]],
                has_more=len(refunds) > EMBEDDED_REFUNDS,
            )
        elif kind == "dispute":
            # Stored as ids; Stripe embeds the whole balance transactions.
            shown["balance_transactions"] = [
                self._present(self._objects["balance_transaction"][txn_id])
                for txn_id in obj["balance_transactions"]
            ]
        return shown

    def _expand(self, node: dict, parts: list[str]) -> None:
        head, rest = parts[0], parts[1:]
        value = node.get(head)
        if isinstance(value, str):
            kind = EXPANDABLE[KIND_OF_OBJECT.get(node["object"], node["object"])][head]
            if kind == "source":
                kind = SOURCE_KINDS[value.split("_")[0]]
            target = self._objects[kind].get(value)
            if target is not None:
                value = node[head] = self._present(target)
        if rest and isinstance(value, dict):
            self._expand(value, rest)

    def _filtered_list(self, kind: str, p: dict, url: str, fields: tuple[str, ...]) -> dict:
        """A list filtered on equal `fields` and the `created` range."""

        def keep(obj: dict) -> bool:
            return all(obj[f] == p[f] for f in fields if f in p) and _in_range(
                obj["created"], p.get("created")
            )

        with self.lock:
            return self._list(kind, p, url, keep)

    def _list(self, kind: str, params: dict, url: str, keep: Callable[[dict], bool]) -> dict:
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise invalid(
                "Invalid limit: must be between 1 and 100",
                code="parameter_invalid_integer",
                param="limit",
            )
        after, before = params.get("starting_after"), params.get("ending_before")
        if after and before:
            raise invalid(
                "You may only specify one of these parameters: ending_before, starting_after.",
                code="parameters_exclusive",
                param="ending_before",
            )
        expansions = self._expansions(kind, params.get("expand"), listing=True)
        rows = sorted(
            (o for o in self._objects[kind].values() if keep(o)), key=self._order_key, reverse=True
        )
        if after:
            cursor = self._order_key(self._cursor(kind, after, "starting_after"))
            older = [o for o in rows if self._order_key(o) < cursor]
            page, has_more = older[:limit], len(older) > limit
        elif before:
            cursor = self._order_key(self._cursor(kind, before, "ending_before"))
            newer = [o for o in rows if self._order_key(o) > cursor]
            page, has_more = newer[-limit:], len(newer) > limit
        else:
            page, has_more = rows[:limit], len(rows) > limit
        return {
            "object": "list",
            "data": [self._render(o, expansions) for o in page],
            "has_more": has_more,
            "url": url,
        }

    def _cursor(self, kind: str, object_id: str, param: str) -> dict:
        found = self._objects[kind].get(object_id)
        if found is None:
            label = _MISSING[kind][0]
            raise invalid(f"No such {label}: '{object_id}'", code="resource_missing", param=param)
        return found

    # --- customers -----------------------------------------------------------------------

    def create_customer(self, params: dict, request: RequestInfo) -> dict:
        p = sp.validate(params, CUSTOMER_FIELDS)
        expansions = self._expansions("customer", p.get("expand"))
        with self.lock:
            now = self.clock.unix()
            customer = _example("customer")
            customer.update(
                id=self.new_id("cus", 14),
                address=None,
                balance=0,
                created=now,
                currency=None,
                default_source=None,
                delinquent=False,
                description=None,
                discount=None,
                email=None,
                invoice_prefix=self.token(8).upper(),
                invoice_settings={
                    "custom_fields": None,
                    "default_payment_method": None,
                    "footer": None,
                    "rendering_options": None,
                },
                livemode=False,
                metadata={},
                name=None,
                next_invoice_sequence=1,
                phone=None,
                preferred_locales=[],
                shipping=None,
                tax_exempt="none",
                test_clock=None,
            )
            self._apply_customer_fields(customer, p)
            self._add("customer", customer)
            self._index_customer(customer)
            self._emit("customer.created", customer, request, now)
            return self._render(customer, expansions)

    @staticmethod
    def _apply_customer_fields(customer: dict, p: dict) -> None:
        for name in ("description", "email", "name", "phone", "preferred_locales"):
            if name in p:
                customer[name] = p[name]
        if "address" in p:
            customer["address"] = _address(p["address"])
        if "shipping" in p:
            customer["shipping"] = _shipping(p["shipping"])
        if "metadata" in p:
            customer["metadata"] = _merged_metadata(customer["metadata"], p["metadata"])

    def update_customer(self, customer_id: str, params: dict, request: RequestInfo) -> dict:
        p = sp.validate(params, CUSTOMER_FIELDS)
        expansions = self._expansions("customer", p.get("expand"))
        with self.lock:
            customer = self._get("customer", customer_id)
            before = copy.deepcopy(customer)
            self._apply_customer_fields(customer, p)
            previous = {k: v for k, v in before.items() if customer[k] != v}
            if "metadata" in previous:
                old, new = before["metadata"], customer["metadata"]
                previous["metadata"] = {
                    k: old.get(k) for k in old.keys() | new.keys() if old.get(k) != new.get(k)
                }
            if previous:
                self._index_customer(customer)
                self._emit("customer.updated", customer, request, self.clock.unix(), previous)
            return self._render(customer, expansions)

    def retrieve_customer(self, customer_id: str, params: dict) -> dict:
        p = sp.validate(params, RETRIEVE)
        expansions = self._expansions("customer", p.get("expand"))
        with self.lock:
            return self._render(self._get("customer", customer_id), expansions)

    def list_customers(self, params: dict) -> dict:
        p = sp.validate(params, CUSTOMER_LIST)

        def keep(c: dict) -> bool:
            return ("email" not in p or c["email"] == p["email"]) and _in_range(
                c["created"], p.get("created")
            )

        with self.lock:
            return self._list("customer", p, "/v1/customers", keep)

    def _index_customer(self, customer: dict) -> None:
        """Queue the customer's current state for search, `search_lag_seconds` from now."""
        now = self.clock.now().timestamp()
        entries = self._search_index.setdefault(customer["id"], [])
        entries.append((now + self.search_lag_seconds, copy.deepcopy(customer)))
        # Keep the newest entry already searchable and any still pending.
        shown = [i for i, (since, _) in enumerate(entries) if since <= now]
        if len(shown) > 1:
            del entries[: shown[-1]]

    def search_customers(self, params: dict) -> dict:
        """`GET /v1/customers/search`: matched against the search index, which lags behind
        writes by `search_lag_seconds`; the customers found are shown as they are now."""
        p = sp.validate(params, CUSTOMER_SEARCH)
        matches = search_predicate(p["query"])
        paths = [e for e in p.get("expand", []) if e != "total_count"]
        expansions = self._expansions("customer", paths, listing=True)
        limit = p.get("limit", 10)
        if not 1 <= limit <= 100:
            raise invalid(
                "Invalid limit: must be between 1 and 100",
                code="parameter_invalid_integer",
                param="limit",
            )
        offset = _page_offset(p["page"]) if "page" in p else 0
        with self.lock:
            now = self.clock.now().timestamp()
            found = []
            for customer_id, entries in self._search_index.items():
                indexed = [snapshot for since, snapshot in entries if since <= now]
                if indexed and matches(indexed[-1]):
                    found.append(self._objects["customer"][customer_id])
            found.sort(key=self._order_key, reverse=True)
            window = found[offset : offset + limit]
            has_more = len(found) > offset + limit
            result = {
                "object": "search_result",
                "data": [self._render(c, expansions) for c in window],
                "has_more": has_more,
                "next_page": _page_token(offset + limit) if has_more else None,
                "url": "/v1/customers/search",
            }
            if "total_count" in p.get("expand", []):
                result["total_count"] = len(found)
            return result

    # --- payment intents -----------------------------------------------------------------

    def create_payment_intent(self, params: dict, request: RequestInfo) -> dict:
        p = sp.validate(params, PI_CREATE)
        sp.check_amount(p["amount"], p["currency"])
        expansions = self._expansions("payment_intent", p.get("expand"))
        with self.lock:
            customer = self._customer_param(p.get("customer"))
            payment_method = self._payment_method_param(p.get("payment_method"))
            if p.get("confirm") and payment_method is None:
                raise invalid(
                    "You cannot confirm this PaymentIntent because it's missing a payment "
                    "method. To confirm the PaymentIntent, pass a `payment_method`.",
                    code="payment_intent_unexpected_state",
                    param="payment_method",
                )
            now = self.clock.unix()
            intent_id = self.new_id("pi")
            automatic = p.get("automatic_payment_methods")
            intent = _example("payment_intent")
            intent.update(
                id=intent_id,
                amount=p["amount"],
                amount_capturable=0,
                amount_details={"tip": {}},
                amount_received=0,
                application=None,
                application_fee_amount=None,
                automatic_payment_methods=(
                    {"allow_redirects": automatic.get("allow_redirects", "always"), "enabled": True}
                    if automatic and automatic["enabled"]
                    else None
                ),
                canceled_at=None,
                cancellation_reason=None,
                capture_method=p.get("capture_method", "automatic"),
                client_secret=f"{intent_id}_secret_{self.token(25)}",
                confirmation_method="automatic",
                created=now,
                currency=p["currency"],
                customer=customer,
                customer_account=None,
                description=p.get("description"),
                excluded_payment_method_types=None,
                last_payment_error=None,
                latest_charge=None,
                livemode=False,
                managed_payments=None,
                metadata=_merged_metadata({}, p.get("metadata", {})),
                next_action=None,
                on_behalf_of=None,
                payment_method=payment_method,
                payment_method_configuration_details=(
                    {"id": self.new_id("pmc"), "parent": None} if automatic else None
                ),
                payment_method_options={
                    "card": {
                        "installments": None,
                        "mandate_options": None,
                        "network": None,
                        "request_three_d_secure": "automatic",
                    }
                },
                payment_method_types=p.get("payment_method_types", ["card"]),
                processing=None,
                receipt_email=p.get("receipt_email"),
                review=None,
                setup_future_usage=p.get("setup_future_usage"),
                shipping=_shipping(p.get("shipping")),
                source=None,
                statement_descriptor=p.get("statement_descriptor"),
                statement_descriptor_suffix=p.get("statement_descriptor_suffix"),
                status=("requires_confirmation" if payment_method else "requires_payment_method"),
                transfer_data=None,
                transfer_group=p.get("transfer_group"),
            )
            self._add("payment_intent", intent)
            self._emit("payment_intent.created", intent, request, now)
            if p.get("confirm"):
                self._confirm(intent, request, now, expansions)
            return self._render(intent, expansions)

    def retrieve_payment_intent(self, intent_id: str, params: dict) -> dict:
        p = sp.validate(params, PI_RETRIEVE)
        expansions = self._expansions("payment_intent", p.get("expand"))
        with self.lock:
            return self._render(self._get("payment_intent", intent_id), expansions)

    def update_payment_intent(self, intent_id: str, params: dict, request: RequestInfo) -> dict:
        p = sp.validate(params, PI_UPDATE)
        expansions = self._expansions("payment_intent", p.get("expand"))
        with self.lock:
            intent = self._get("payment_intent", intent_id)
            if intent["status"] not in MUTABLE_PI_STATUSES:
                raise StripeError(
                    400,
                    "You cannot update this PaymentIntent because it has a status of "
                    f"{intent['status']}. Updates are only allowed when the PaymentIntent has "
                    f"one of the following statuses: {', '.join(MUTABLE_PI_STATUSES)}.",
                    code="payment_intent_unexpected_state",
                    store=True,
                )
            amount = p.get("amount", intent["amount"])
            currency = p.get("currency", intent["currency"])
            if "amount" in p or "currency" in p:
                sp.check_amount(amount, currency)
            customer = self._customer_param(p["customer"]) if "customer" in p else None
            payment_method = self._payment_method_param(p.get("payment_method"))
            intent.update(amount=amount, currency=currency)
            if "customer" in p:
                intent["customer"] = customer
            for name in (
                "capture_method",
                "description",
                "receipt_email",
                "setup_future_usage",
                "statement_descriptor",
                "statement_descriptor_suffix",
                "transfer_group",
            ):
                if name in p:
                    intent[name] = p[name]
            if "shipping" in p:
                intent["shipping"] = _shipping(p["shipping"])
            if "metadata" in p:
                intent["metadata"] = _merged_metadata(intent["metadata"], p["metadata"])
            if payment_method is not None:
                intent["payment_method"] = payment_method
                if intent["status"] == "requires_payment_method":
                    intent["status"] = "requires_confirmation"
            # Stripe clears the previous attempt's error on any update.
            intent["last_payment_error"] = None
            return self._render(intent, expansions)

    def confirm_payment_intent(self, intent_id: str, params: dict, request: RequestInfo) -> dict:
        p = sp.validate(params, PI_CONFIRM)
        expansions = self._expansions("payment_intent", p.get("expand"))
        with self.lock:
            intent = self._get("payment_intent", intent_id)
            if intent["status"] not in CONFIRMABLE_PI_STATUSES:
                raise _unexpected_state(
                    "confirm", "confirmed", intent["status"], CONFIRMABLE_PI_STATUSES
                )
            payment_method = self._payment_method_param(p.get("payment_method"))
            if payment_method is None and intent["payment_method"] is None:
                raise invalid(
                    "You cannot confirm this PaymentIntent because it's missing a payment "
                    "method. To confirm the PaymentIntent, pass a `payment_method`.",
                    code="payment_intent_unexpected_state",
                    param="payment_method",
                )
            if payment_method is not None:
                intent["payment_method"] = payment_method
            for name in ("capture_method", "receipt_email"):
                if name in p:
                    intent[name] = p[name]
            if "shipping" in p:
                intent["shipping"] = _shipping(p["shipping"])
            self._confirm(intent, request, self.clock.unix(), expansions)
            return self._render(intent, expansions)

    def capture_payment_intent(self, intent_id: str, params: dict, request: RequestInfo) -> dict:
        p = sp.validate(params, PI_CAPTURE)
        expansions = self._expansions("payment_intent", p.get("expand"))
        with self.lock:
            intent = self._get("payment_intent", intent_id)
            if intent["status"] != "requires_capture":
                raise _unexpected_state(
                    "capture", "captured", intent["status"], ["requires_capture"]
                )
            amount = p.get("amount_to_capture", intent["amount_capturable"])
            if not 1 <= amount <= intent["amount_capturable"]:
                raise invalid(
                    "The amount to capture must be a positive integer no greater than the "
                    f"amount capturable ({intent['amount_capturable']}).",
                    code="parameter_invalid_integer" if amount < 1 else "amount_too_large",
                    param="amount_to_capture",
                )
            now = self.clock.unix()
            charge = self._objects["charge"][intent["latest_charge"]]
            # Capturing less than was authorized releases the rest, which Stripe reports as
            # refunded on the charge.
            charge.update(
                amount_captured=amount,
                amount_refunded=charge["amount"] - amount,
                balance_transaction=self._new_balance_transaction(charge, amount, now),
                captured=True,
            )
            if "metadata" in p:
                intent["metadata"] = _merged_metadata(intent["metadata"], p["metadata"])
            intent.update(amount_capturable=0, amount_received=amount, status="succeeded")
            self._emit("charge.captured", charge, request, now)
            self._emit("payment_intent.succeeded", intent, request, now)
            return self._render(intent, expansions)

    def cancel_payment_intent(self, intent_id: str, params: dict, request: RequestInfo) -> dict:
        p = sp.validate(params, PI_CANCEL)
        expansions = self._expansions("payment_intent", p.get("expand"))
        with self.lock:
            intent = self._get("payment_intent", intent_id)
            if intent["status"] not in CANCELABLE_PI_STATUSES:
                raise _unexpected_state(
                    "cancel", "canceled", intent["status"], CANCELABLE_PI_STATUSES
                )
            now = self.clock.unix()
            if intent["status"] == "requires_capture":
                # The authorization is released: Stripe shows the whole amount as refunded.
                charge = self._objects["charge"][intent["latest_charge"]]
                charge.update(amount_refunded=charge["amount"], refunded=True)
            intent.update(
                amount_capturable=0,
                canceled_at=now,
                cancellation_reason=p.get("cancellation_reason"),
                next_action=None,
                status="canceled",
            )
            self._emit("payment_intent.canceled", intent, request, now)
            return self._render(intent, expansions)

    def list_payment_intents(self, params: dict) -> dict:
        p = sp.validate(params, PI_LIST)

        def keep(pi: dict) -> bool:
            return ("customer" not in p or pi["customer"] == p["customer"]) and _in_range(
                pi["created"], p.get("created")
            )

        with self.lock:
            return self._list("payment_intent", p, "/v1/payment_intents", keep)

    def awaiting_payment(self, created_by: int) -> list[str]:
        """Ids of PaymentIntents waiting for the shopper (a payment method, or 3-D Secure),
        created at or before `created_by`."""
        with self.lock:
            return [
                pi["id"]
                for pi in self._objects["payment_intent"].values()
                if pi["status"] in ("requires_payment_method", "requires_action")
                and pi["created"] <= created_by
            ]

    def captured_charges(self) -> list[str]:
        """Ids of the succeeded, captured charges, oldest first."""
        with self.lock:
            charges = (
                ch
                for ch in self._objects["charge"].values()
                if ch["status"] == "succeeded" and ch["captured"]
            )
            return [ch["id"] for ch in sorted(charges, key=self._order_key)]

    def _customer_param(self, customer_id: str | None) -> str | None:
        if customer_id is not None and customer_id not in self._objects["customer"]:
            raise invalid(
                f"No such customer: '{customer_id}'", code="resource_missing", param="customer"
            )
        return customer_id

    def _payment_method_param(self, reference: str | None) -> str | None:
        """A test token (`pm_card_visa`) becomes a new PaymentMethod, as Stripe does."""
        if reference is None or reference in self._objects["payment_method"]:
            return reference
        card = TEST_CARDS.get(reference)
        if card is None:
            raise invalid(
                f"No such PaymentMethod: '{reference}'",
                code="resource_missing",
                param="payment_method",
            )
        now = self.clock.now()
        method = _example("payment_method")
        method.update(
            id=self.new_id("pm"),
            allow_redisplay="unspecified",
            billing_details={
                "address": _address({}),
                "email": None,
                "name": None,
                "phone": None,
                "tax_id": None,
            },
            created=int(now.timestamp()),
            customer=None,
            customer_account=None,
            livemode=False,
            metadata={},
            type="card",
        )
        method["card"].update(
            brand=card.brand,
            checks={
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            country="US",
            display_brand=card.brand,
            exp_month=12,
            exp_year=now.year + 3,
            fingerprint=card.fingerprint,
            funding="credit",
            generated_from=None,
            last4=card.last4,
            networks={"available": [card.brand], "preferred": None},
            regulated_status="unregulated",
            three_d_secure_usage={"supported": True},
            wallet=None,
        )
        self._add("payment_method", method)
        self._cards[method["id"]] = card
        return method["id"]

    def _confirm(
        self, intent: dict, request: RequestInfo, now: int, expansions: list[list]
    ) -> None:
        method_id = intent["payment_method"]
        card = self._cards[method_id]
        intent.update(last_payment_error=None, next_action=None)
        if card.result == "authenticate" and intent["status"] != "requires_action":
            source = self.new_id("src")
            intent.update(
                status="requires_action",
                next_action={
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {
                        "type": "three_d_secure_redirect",
                        "stripe_js": f"https://hooks.stripe.com/redirect/authenticate/{source}",
                        "source": source,
                    },
                },
            )
            self._emit("payment_intent.requires_action", intent, request, now)
            return
        # Confirming again after `requires_action` stands for the shopper passing 3D Secure.
        charge = self._new_charge(intent, method_id, card, now)
        intent["latest_charge"] = charge["id"]
        if card.result in ("decline", "block"):
            raise self._declined(intent, charge, card, request, now, expansions)
        if intent["capture_method"] == "manual":
            intent.update(amount_capturable=intent["amount"], status="requires_capture")
            self._emit("charge.succeeded", charge, request, now)
            self._emit("payment_intent.amount_capturable_updated", intent, request, now)
        else:
            charge.update(
                amount_captured=charge["amount"],
                balance_transaction=self._new_balance_transaction(charge, charge["amount"], now),
                captured=True,
            )
            intent.update(amount_received=intent["amount"], status="succeeded")
            self._emit("charge.succeeded", charge, request, now)
            self._emit("payment_intent.succeeded", intent, request, now)

    def _declined(
        self,
        intent: dict,
        charge: dict,
        card: SimCard,
        request: RequestInfo,
        now: int,
        expansions: list[list],
    ) -> StripeError:
        """Record a declined attempt; returns the 402 Stripe answers with."""
        error = {
            "charge": charge["id"],
            "code": "card_declined",
            "decline_code": card.decline_code,
            "doc_url": sp.DOC_URL.format("card-declined"),
            "message": card.message,
            "payment_method": self._present(
                self._objects["payment_method"][intent["payment_method"]]
            ),
            "type": "card_error",
        }
        # A failed attempt detaches the payment method; the shopper has to supply another.
        intent.update(
            last_payment_error=error, payment_method=None, status="requires_payment_method"
        )
        self._emit("charge.failed", charge, request, now)
        self._emit("payment_intent.payment_failed", intent, request, now)
        extra = {k: v for k, v in error.items() if k not in ("code", "doc_url", "message", "type")}
        extra["payment_intent"] = self._render(intent, expansions)
        return StripeError(
            402, card.message, type_="card_error", code="card_declined", store=True, extra=extra
        )

    def _new_charge(self, intent: dict, method_id: str, card: SimCard, now: int) -> dict:
        charge_id = self.new_id("ch")
        approved = card.result in ("approve", "authenticate")
        low, high = RISK_SCORES[card.risk_level]
        outcome = {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": card.risk_level,
            "risk_score": _stable_number(charge_id, low, high),
            "seller_message": "Payment complete.",
            "type": "authorized",
        }
        if card.risk_level == "elevated":
            outcome["reason"] = "elevated_risk_level"
        if card.result == "decline":
            outcome.update(
                advice_code="try_again_later",
                network_status="declined_by_network",
                reason=card.decline_code,
                seller_message=(
                    "The bank did not return any further details with this decline."
                    if card.decline_code == "generic_decline"
                    else f"The bank returned the decline code `{card.decline_code}`."
                ),
                type="issuer_declined",
            )
        elif card.result == "block":
            outcome.update(
                network_status="not_sent_to_network",
                reason="highest_risk_level",
                seller_message="Stripe blocked this payment as too risky.",
                type="blocked",
            )
        method = self._objects["payment_method"][method_id]
        charge = _example("charge")
        details = charge["payment_method_details"]["card"]
        details.update(
            amount_authorized=intent["amount"] if approved else None,
            authorization_code=str(_stable_number(charge_id, 100000, 999999)) if approved else None,
            brand=card.brand,
            checks=copy.deepcopy(method["card"]["checks"]),
            country="US",
            exp_month=method["card"]["exp_month"],
            exp_year=method["card"]["exp_year"],
            extended_authorization={"status": "disabled"},
            fingerprint=card.fingerprint,
            funding="credit",
            incremental_authorization={"status": "unavailable"},
            installments=None,
            last4=card.last4,
            mandate=None,
            multicapture={"status": "unavailable"},
            network=card.brand,
            network_token={"used": False},
            network_transaction_id=(
                str(_stable_number(charge_id, 10**14, 10**15 - 1)) if approved else None
            ),
            overcapture={"maximum_amount_capturable": intent["amount"], "status": "unavailable"},
            regulated_status="unregulated",
            three_d_secure=(
                {
                    "authentication_flow": "challenge",
                    "electronic_commerce_indicator": "05",
                    "exemption_indicator": None,
                    "result": "authenticated",
                    "result_reason": None,
                    "transaction_id": self.token(24),
                    "version": "2.2.0",
                }
                if card.result == "authenticate"
                else None
            ),
            transaction_link_id=None,
            wallet=None,
        )
        charge.update(
            id=charge_id,
            amount=intent["amount"],
            amount_captured=0,
            amount_refunded=0,
            application=None,
            application_fee=None,
            application_fee_amount=None,
            balance_transaction=None,
            billing_details=copy.deepcopy(method["billing_details"]),
            calculated_statement_descriptor="SITECORE SANDBOX" if approved else None,
            captured=False,
            created=now,
            currency=intent["currency"],
            customer=intent["customer"],
            description=intent["description"],
            disputed=False,
            failure_balance_transaction=None,
            failure_code=None if approved else "card_declined",
            failure_message=None if approved else card.message,
            fraud_details={},
            livemode=False,
            metadata=copy.deepcopy(intent["metadata"]),
            on_behalf_of=None,
            outcome=outcome,
            paid=approved,
            payment_intent=intent["id"],
            payment_method=method_id,
            receipt_email=intent["receipt_email"],
            receipt_number=None,
            receipt_url=(
                f"https://pay.stripe.com/receipts/payment/{self.token(60)}" if approved else None
            ),
            refunded=False,
            refunds={
                "data": [],
                "has_more": False,
                "object": "list",
                "url": f"/v1/charges/{charge_id}/refunds",
            },
            review=None,
            shipping=copy.deepcopy(intent["shipping"]),
            source=None,
            source_transfer=None,
            statement_descriptor=intent["statement_descriptor"],
            statement_descriptor_suffix=intent["statement_descriptor_suffix"],
            status="succeeded" if approved else "failed",
            transfer_data=None,
            transfer_group=intent["transfer_group"],
        )
        self._add("charge", charge)
        return charge

    def _new_balance_transaction(self, charge: dict, amount: int, now: int) -> str:
        """The captured payment, less Stripe's fee, available PAYOUT_DELAY_DAYS days later."""
        fee = int((Decimal(amount) * FEE_RATE).quantize(Decimal(1), ROUND_HALF_UP)) + FEE_FIXED
        return self._record_balance(
            source=charge["id"],
            type_="charge",
            category="charge",
            amount=amount,
            fee=fee,
            fee_description="Stripe processing fees",
            currency=charge["currency"],
            description=charge["description"],
            now=now,
            available_on=(now // 86400 + PAYOUT_DELAY_DAYS) * 86400,
        )

    def _record_balance(
        self,
        *,
        source: str,
        type_: str,
        category: str,
        amount: int,
        currency: str,
        description: str | None,
        now: int,
        fee: int = 0,
        fee_description: str = "",
        available_on: int | None = None,
    ) -> str:
        """A balance transaction; without `available_on` the money moves at once (refunds,
        dispute withdrawals, payouts)."""
        transaction = _example("balance_transaction")
        transaction.update(
            id=self.new_id("txn"),
            amount=amount,
            available_on=now if available_on is None else available_on,
            balance_type="payments",
            created=now,
            currency=currency,
            description=description,
            exchange_rate=None,
            fee=fee,
            fee_details=(
                [
                    {
                        "amount": fee,
                        "application": None,
                        "currency": currency,
                        "description": fee_description,
                        "type": "stripe_fee",
                    }
                ]
                if fee
                else []
            ),
            net=amount - fee,
            reporting_category=category,
            source=source,
            status="pending",
            type=type_,
        )
        self._add("balance_transaction", transaction)
        return transaction["id"]

    # --- charges, balance transactions, events ---------------------------------------------

    def retrieve_charge(self, charge_id: str, params: dict) -> dict:
        p = sp.validate(params, RETRIEVE)
        expansions = self._expansions("charge", p.get("expand"))
        with self.lock:
            return self._render(self._get("charge", charge_id), expansions)

    def list_charges(self, params: dict) -> dict:
        p = sp.validate(params, CHARGE_LIST)
        fields = ("customer", "payment_intent", "transfer_group")

        def keep(ch: dict) -> bool:
            return all(ch[f] == p[f] for f in fields if f in p) and _in_range(
                ch["created"], p.get("created")
            )

        with self.lock:
            return self._list("charge", p, "/v1/charges", keep)

    def retrieve_balance_transaction(self, transaction_id: str, params: dict) -> dict:
        p = sp.validate(params, RETRIEVE)
        expansions = self._expansions("balance_transaction", p.get("expand"))
        with self.lock:
            return self._render(self._get("balance_transaction", transaction_id), expansions)

    def list_balance_transactions(self, params: dict) -> dict:
        p = sp.validate(params, BALANCE_TRANSACTION_LIST)
        fields = ("currency", "source", "type")
        with self.lock:
            in_payout = self.payout_transaction_ids(p["payout"]) if "payout" in p else None

            def keep(bt: dict) -> bool:
                return (
                    (in_payout is None or bt["id"] in in_payout)
                    and all(bt[f] == p[f] for f in fields if f in p)
                    and _in_range(bt["created"], p.get("created"))
                )

            return self._list("balance_transaction", p, "/v1/balance_transactions", keep)

    def retrieve_event(self, event_id: str, params: dict) -> dict:
        p = sp.validate(params, RETRIEVE)
        expansions = self._expansions("event", p.get("expand"))
        with self.lock:
            return self._render(self._get("event", event_id), expansions)

    def list_events(self, params: dict) -> dict:
        """Events visible by now (see `configure_event_delivery`), each of a page repeated up
        to `max_copies` times at random later places in it. `delivery_success=true` keeps the
        events delivered to every webhook endpoint, `false` those still pending."""
        p = sp.validate(params, EVENT_LIST)
        if "type" in p and "types" in p:
            raise invalid(
                "You may only specify one of these parameters: type, types.",
                code="parameters_exclusive",
                param="types",
            )
        if any("*" in t for t in p.get("types", [])):
            raise invalid("Wildcards are not supported in types; use type instead.", param="types")
        pattern = re.compile(re.escape(p["type"]).replace(r"\*", ".*")) if "type" in p else None
        wanted = set(p["types"]) if "types" in p else None
        delivered = p.get("delivery_success")
        now = self.clock.now().timestamp()

        def keep(event: dict) -> bool:
            return (
                not self._expired_event(event)
                and self._visible_at.get(event["id"], 0) <= now
                and _in_range(event["created"], p.get("created"))
                and (pattern is None or pattern.fullmatch(event["type"]) is not None)
                and (wanted is None or event["type"] in wanted)
                and (delivered is None or (event["pending_webhooks"] == 0) == delivered)
            )

        with self.lock:
            page = self._list("event", p, "/v1/events", keep)
            if self._max_copies > 1:
                self._repeat_events(page, p.get("limit", 10))
            return page

    def _repeat_events(self, page: dict, limit: int) -> None:
        """Repeat events within the page as a lagging list index can; still at most `limit`."""
        rows = page["data"]
        for event in list(rows):
            for _ in range(self._delivery_rng.randint(1, self._max_copies) - 1):
                later = rows.index(event) + 1
                rows.insert(self._delivery_rng.randint(later, len(rows)), copy.deepcopy(event))
        if len(rows) > limit:
            del rows[limit:]
            page["has_more"] = True


# --- HTTP --------------------------------------------------------------------------------

_NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)


def mask_key(key: str) -> str:
    """Stripe shows the first 8 and last 4 characters of a rejected key."""
    if len(key) <= 12:
        return "*" * len(key)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def _api_key(authorization: str | None) -> str:
    scheme, _, credentials = (authorization or "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "basic" and credentials:
        try:
            return base64.b64decode(credentials).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            return credentials
    if scheme.lower() == "bearer":
        return credentials
    return ""


# Injected 4xx answers, as Stripe gives them (docs.stripe.com/error-codes).
INJECTED_REFUSALS: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "Invalid integer: the amount must be a positive integer (injected).",
        {"code": "parameter_invalid_integer", "param": "amount"},
    ),
    401: ("Invalid API Key provided: sk_test_****(injected)", {}),
    402: (
        "Your card was declined (injected).",
        {
            "type_": "card_error",
            "code": "card_declined",
            "extra": {"decline_code": "generic_decline"},
        },
    ),
    403: ("The provided key does not have access to this resource (injected).", {}),
    404: ("No such payment_intent (injected).", {"code": "resource_missing", "param": "intent"}),
    409: (
        "This object cannot be accessed right now because another API request or Stripe "
        "process is currently accessing it (injected).",
        {"code": "lock_timeout"},
    ),
}


def fault_response(status: int) -> tuple[dict, dict[str, str]]:
    """An injected error as Stripe words it. Injected errors never reach the idempotency layer,
    so a 429 is not stored, as Stripe does not store them."""
    headers = {"Request-Id": f"req_{secrets.token_hex(7)}"}
    if status in INJECTED_REFUSALS:
        message, fields = INJECTED_REFUSALS[status]
        error = StripeError(status, message, **fields)
    elif status == 429:
        error = StripeError(
            429,
            "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            code="rate_limit",
        )
    else:
        error = StripeError(
            status,
            "An unknown error occurred while processing your request. Please retry.",
            type_="api_error",
        )
    return error.body(), headers


def create_app(
    *,
    clock: Clock | None = None,
    seed: int | None = None,
    api_keys: Iterable[str] | None = None,
    search_lag_seconds: float = 0,
) -> SandboxApp:
    """The Stripe simulator as an ASGI app; its state is `app.state.simulator`.

    Without `api_keys`, any test-mode key (`sk_test_...`, `rk_test_...`) is accepted. `seed`
    seeds object ids, fault injection and event delivery misbehaviour.
    """
    sim = StripeSimulator(clock=clock, seed=seed, search_lag_seconds=search_lag_seconds)
    allowed = frozenset(api_keys) if api_keys is not None else None
    app = SandboxApp(title="Stripe simulator")
    app.state.simulator = sim
    install_sandbox_controls(
        app,
        name="stripe",
        clock=sim.clock,
        reset=sim.reset,
        fault_response=fault_response,
        seed=seed,
    )

    def authenticate(authorization: str | None) -> None:
        key = _api_key(authorization)
        if not key:
            raise StripeError(401, _NO_KEY)
        valid = key in allowed if allowed is not None else key.startswith(("sk_test_", "rk_test_"))
        if not valid:
            raise StripeError(401, f"Invalid API Key provided: {mask_key(key)}")

    async def handle(request: Request, operation: Callable[[dict, RequestInfo], dict]) -> Response:
        request_id = sim.new_request_id()
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("stripe-version") or sim.api_version,
        }
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        if key is not None:
            headers["Idempotency-Key"] = key
        try:
            authenticate(request.headers.get("authorization"))
            raw = request.url.query if request.method == "GET" else (await request.body()).decode()
            params = sp.decode_form(parse_qsl(raw, keep_blank_values=True))
            endpoint = f"{request.method} {request.url.path}"
            info = RequestInfo(request_id, key)
            status, body, original = sim.execute(endpoint, params, info, operation)
        except StripeError as exc:
            log_url = sim.request_log_url(request_id) if exc.status != 401 else None
            return JSONResponse(exc.body(log_url), status_code=exc.status, headers=headers)
        if original is not None:
            headers.update({"Idempotent-Replayed": "true", "Original-Request": original})
        return JSONResponse(body, status_code=status, headers=headers)

    def route(method: str, path: str, operation: Callable[[dict, dict, RequestInfo], dict]) -> None:
        async def endpoint(request: Request) -> Response:
            path_params = request.path_params
            return await handle(request, lambda params, info: operation(path_params, params, info))

        app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)

    route("POST", "/v1/customers", lambda a, p, r: sim.create_customer(p, r))
    route("GET", "/v1/customers", lambda a, p, r: sim.list_customers(p))
    # Before /v1/customers/{customer}, which would otherwise take "search" for an id.
    route("GET", "/v1/customers/search", lambda a, p, r: sim.search_customers(p))
    route(
        "GET", "/v1/customers/{customer}", lambda a, p, r: sim.retrieve_customer(a["customer"], p)
    )
    route(
        "POST",
        "/v1/customers/{customer}",
        lambda a, p, r: sim.update_customer(a["customer"], p, r),
    )
    route("POST", "/v1/payment_intents", lambda a, p, r: sim.create_payment_intent(p, r))
    route("GET", "/v1/payment_intents", lambda a, p, r: sim.list_payment_intents(p))
    route(
        "GET",
        "/v1/payment_intents/{intent}",
        lambda a, p, r: sim.retrieve_payment_intent(a["intent"], p),
    )
    for suffix, operation in (
        ("", sim.update_payment_intent),
        ("/confirm", sim.confirm_payment_intent),
        ("/capture", sim.capture_payment_intent),
        ("/cancel", sim.cancel_payment_intent),
    ):
        route(
            "POST",
            f"/v1/payment_intents/{{intent}}{suffix}",
            lambda a, p, r, op=operation: op(a["intent"], p, r),
        )
    route("GET", "/v1/charges", lambda a, p, r: sim.list_charges(p))
    route("GET", "/v1/charges/{charge}", lambda a, p, r: sim.retrieve_charge(a["charge"], p))
    route("POST", "/v1/refunds", lambda a, p, r: sim.create_refund(p, r))
    route("GET", "/v1/refunds", lambda a, p, r: sim.list_refunds(p))
    route("GET", "/v1/refunds/{refund}", lambda a, p, r: sim.retrieve_refund(a["refund"], p))
    route("POST", "/v1/refunds/{refund}", lambda a, p, r: sim.update_refund(a["refund"], p, r))
    route("GET", "/v1/disputes", lambda a, p, r: sim.list_disputes(p))
    route("GET", "/v1/disputes/{dispute}", lambda a, p, r: sim.retrieve_dispute(a["dispute"], p))
    route("POST", "/v1/disputes/{dispute}", lambda a, p, r: sim.update_dispute(a["dispute"], p, r))
    route("GET", "/v1/radar/early_fraud_warnings", lambda a, p, r: sim.list_early_fraud_warnings(p))
    route(
        "GET",
        "/v1/radar/early_fraud_warnings/{early_fraud_warning}",
        lambda a, p, r: sim.retrieve_early_fraud_warning(a["early_fraud_warning"], p),
    )
    route("GET", "/v1/payouts", lambda a, p, r: sim.list_payouts(p))
    route("GET", "/v1/payouts/{payout}", lambda a, p, r: sim.retrieve_payout(a["payout"], p))
    route("GET", "/v1/balance_transactions", lambda a, p, r: sim.list_balance_transactions(p))
    route(
        "GET",
        "/v1/balance_transactions/{id}",
        lambda a, p, r: sim.retrieve_balance_transaction(a["id"], p),
    )
    route("GET", "/v1/events", lambda a, p, r: sim.list_events(p))
    route("GET", "/v1/events/{id}", lambda a, p, r: sim.retrieve_event(a["id"], p))

    # Test helpers: what Stripe, banks and card networks do on their own. JSON in and out.
    def helper(method: str, path: str, operation: Callable[[dict, Any], dict]) -> None:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                error = invalid(f"The request body is not valid JSON: {exc}")
                return JSONResponse(error.body(), status_code=error.status)
            try:
                return JSONResponse(operation(request.path_params, body))
            except StripeError as exc:
                return JSONResponse(exc.body(), status_code=exc.status)

        app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)

    helpers = "/_sandbox/stripe"
    helper("POST", f"{helpers}/disputes", lambda a, b: sim.open_dispute(b))
    helper("POST", f"{helpers}/disputes/{{id}}/close", lambda a, b: sim.close_dispute(a["id"], b))
    helper(
        "POST", f"{helpers}/early_fraud_warnings", lambda a, b: sim.create_early_fraud_warning(b)
    )
    helper("POST", f"{helpers}/payouts", lambda a, b: sim.create_payouts(b))
    helper("POST", f"{helpers}/payouts/{{id}}/paid", lambda a, b: sim.pay_payout(a["id"]))
    helper("POST", f"{helpers}/refunds/{{id}}/fail", lambda a, b: sim.fail_refund(a["id"], b))
    helper("POST", f"{helpers}/webhook_endpoints", lambda a, b: sim.create_webhook_endpoint(b))
    helper("GET", f"{helpers}/webhook_endpoints", lambda a, b: sim.list_webhook_endpoints())
    helper(
        "DELETE",
        f"{helpers}/webhook_endpoints/{{id}}",
        lambda a, b: sim.delete_webhook_endpoint(a["id"]),
    )
    helper(
        "GET", f"{helpers}/webhook_deliveries", lambda a, b: {"attempts": sim.webhooks.attempts()}
    )
    helper("GET", f"{helpers}/event_delivery", lambda a, b: sim.event_delivery())
    helper("POST", f"{helpers}/event_delivery", lambda a, b: sim.configure_event_delivery(b))

    @app.exception_handler(StarletteHTTPException)
    async def unknown_route(request: Request, exc: StarletteHTTPException) -> Response:
        error = StripeError(
            exc.status_code,
            f"Unrecognized request URL ({request.method}: {request.url.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )
        return JSONResponse(error.body(), status_code=exc.status_code)

    return app
