"""Stripe API simulator: customers, PaymentIntents, charges, balance transactions and events.

Speaks Stripe's wire format (form-encoded bracket params, Stripe's error bodies and headers,
idempotency keys, list objects) so the official `stripe` SDK works against it unchanged. Every
object starts as a deep copy of Stripe's own published example (`data/stripe_fixtures.json`) with
the fields that matter overridden, so objects carry every field real ones do.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import random
import re
import string as _string
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox import stripe_params as sp
from sandbox.clock import Clock
from sandbox.common import install_sandbox_controls
from sandbox.stripe_params import StripeError, invalid

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
KINDS = ("customer", "payment_intent", "charge", "balance_transaction", "event", "payment_method")
# How a missing object is named in Stripe's 404 message, and which param the error points at.
_MISSING = {
    "customer": ("customer", "customer"),
    "payment_intent": ("payment_intent", "intent"),
    "charge": ("charge", "charge"),
    "balance_transaction": ("balance_transaction", "id"),
    "event": ("event", "id"),
}
# Which fields of which object can be expanded, and into what kind of object.
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
    "balance_transaction": {"source": "charge"},
}
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
    return copy.deepcopy(FIXTURES[kind])


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


class StripeSimulator:
    """In-memory Stripe account state. Every public method is safe to call from any thread."""

    def __init__(self, *, clock: Clock | None = None, seed: int | None = None) -> None:
        self.clock = clock or Clock()
        self.api_version = API_VERSION
        self.lock = threading.RLock()
        self._seed = seed
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self._rng = random.Random(self._seed)
            self._objects: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS}
            self._seq: dict[str, int] = {}
            self._counter = itertools.count()
            self._cards: dict[str, SimCard] = {}
            self._saved: dict[str, _SavedResult] = {}

    # --- ids, storage, events ----------------------------------------------------------

    def token(self, length: int) -> str:
        with self.lock:
            return "".join(self._rng.choice(_ALPHABET) for _ in range(length))

    def new_id(self, prefix: str, length: int = 24) -> str:
        return f"{prefix}_{self.token(length)}"

    def new_request_id(self) -> str:
        return self.new_id("req", 14)

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
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        event.update(
            id=self.new_id("evt"),
            api_version=self.api_version,
            created=now,
            data=data,
            livemode=False,
            pending_webhooks=0,
            request={"id": request.id, "idempotency_key": request.idempotency_key},
            type=type_,
        )
        self._add("event", event)

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
        shown = copy.deepcopy(obj)
        if shown["object"] == "balance_transaction":
            # Funds become available at `available_on`; Stripe reports the status as of now.
            shown["status"] = (
                "available" if self.clock.unix() >= shown["available_on"] else "pending"
            )
        return shown

    def _expand(self, node: dict, parts: list[str]) -> None:
        head, rest = parts[0], parts[1:]
        value = node.get(head)
        if isinstance(value, str):
            target = self._objects[EXPANDABLE[node["object"]][head]].get(value)
            if target is not None:
                value = node[head] = self._present(target)
        if rest and isinstance(value, dict):
            self._expand(value, rest)

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
        """Ids of PaymentIntents waiting for a payment method, created at or before `created_by`."""
        with self.lock:
            return [
                pi["id"]
                for pi in self._objects["payment_intent"].values()
                if pi["status"] == "requires_payment_method" and pi["created"] <= created_by
            ]

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
        fee = int((Decimal(amount) * FEE_RATE).quantize(Decimal(1), ROUND_HALF_UP)) + FEE_FIXED
        available_on = (now // 86400 + PAYOUT_DELAY_DAYS) * 86400
        transaction = _example("balance_transaction")
        transaction.update(
            id=self.new_id("txn"),
            amount=amount,
            available_on=available_on,
            balance_type="payments",
            created=now,
            currency=charge["currency"],
            description=charge["description"],
            exchange_rate=None,
            fee=fee,
            fee_details=[
                {
                    "amount": fee,
                    "application": None,
                    "currency": charge["currency"],
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ],
            net=amount - fee,
            reporting_category="charge",
            source=charge["id"],
            status="pending",
            type="charge",
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

        def keep(bt: dict) -> bool:
            # No payouts are simulated, so no transaction belongs to one yet.
            if "payout" in p:
                return False
            return all(bt[f] == p[f] for f in fields if f in p) and _in_range(
                bt["created"], p.get("created")
            )

        with self.lock:
            return self._list("balance_transaction", p, "/v1/balance_transactions", keep)

    def retrieve_event(self, event_id: str, params: dict) -> dict:
        p = sp.validate(params, RETRIEVE)
        expansions = self._expansions("event", p.get("expand"))
        with self.lock:
            return self._render(self._get("event", event_id), expansions)

    def list_events(self, params: dict) -> dict:
        """`delivery_success` is accepted and has no effect: the simulator sends no webhooks."""
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

        def keep(event: dict) -> bool:
            return (
                not self._expired_event(event)
                and _in_range(event["created"], p.get("created"))
                and (pattern is None or pattern.fullmatch(event["type"]) is not None)
                and (wanted is None or event["type"] in wanted)
            )

        with self.lock:
            return self._list("event", p, "/v1/events", keep)


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


def create_app(
    *,
    clock: Clock | None = None,
    seed: int | None = None,
    api_keys: Iterable[str] | None = None,
) -> FastAPI:
    """The Stripe simulator as an ASGI app; its state is `app.state.simulator`.

    Without `api_keys`, any test-mode key (`sk_test_...`, `rk_test_...`) is accepted.
    """
    sim = StripeSimulator(clock=clock, seed=seed)
    allowed = frozenset(api_keys) if api_keys is not None else None
    app = FastAPI(title="Stripe simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.simulator = sim
    install_sandbox_controls(app, name="stripe", clock=sim.clock, reset=sim.reset)

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
    route("GET", "/v1/balance_transactions", lambda a, p, r: sim.list_balance_transactions(p))
    route(
        "GET",
        "/v1/balance_transactions/{id}",
        lambda a, p, r: sim.retrieve_balance_transaction(a["id"], p),
    )
    route("GET", "/v1/events", lambda a, p, r: sim.list_events(p))
    route("GET", "/v1/events/{id}", lambda a, p, r: sim.retrieve_event(a["id"], p))

    @app.exception_handler(StarletteHTTPException)
    async def unknown_route(request: Request, exc: StarletteHTTPException) -> Response:
        error = StripeError(
            exc.status_code,
            f"Unrecognized request URL ({request.method}: {request.url.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )
        return JSONResponse(error.body(), status_code=exc.status_code)

    return app
