"""Sitecore Experience Commerce (XC 9/10) as the flows' Sitecore side (backend id ``xc``).

Where XC keeps what the integration writes (docs/xc.md tells the XC administrator what to set
up for it):

- **Payment state**: the order's ``Status``, set with ``SetOrderStatus()`` to the value the
  payment-state and payment mappings' lookups give (``WaitingForPayment``, ``Paid``,
  ``PartiallyRefunded``, ``Refunded``, ``Problem``). Only while the order is in one of the
  statuses the integration may replace (``replaceable_statuses`` in ``xc_payment_state.yaml``):
  an order someone released, completed, cancelled or put on hold keeps its status, and the
  payment state shows in the integration's component only.
- **The integration's component** (``StripePaymentComponent``, from the engine plugin docs/xc.md
  describes; the simulator synthesises it): ``PaymentStatus`` (the same vocabulary as
  OrderCloud's ``xp.PaymentStatus``), ``PaymentIntentId``, ``ChargeId`` and the annotations:
  dispute, fraud review, refund status, fulfilment, and the refund requests customer service
  records (``RefundRequests``). Written through its entity view's ``EditStripePayment`` action,
  which echoes the order's ``Version``.
- **The captured payment**: a federated payment added with the order's ``AddPayment`` action
  (component id = the PaymentIntent id, ``TransactionId`` = the charge id). XC allows it only
  while the order is ``OnHold``, so the order is held first and its status set afterwards; a
  marker in the component (``PaymentHold``) says the hold is ours, so a crash in between is
  finished by the next run, and a hold someone else made is left alone.
- **Refunds**: ``RefundPayment`` on that payment, recorded by XC as a negative sales activity
  whose transaction id is the Stripe refund id; never more than the payment still holds.
- **Customers**: XC customers (``AddCustomer``/``EditCustomer``); the linked Stripe customer id
  in the plugin's ``StripeCustomerComponent`` (``EditStripeCustomer``).

Every entity-view action echoes the entity's ``Version``. A stale one (someone changed the entity
since it was read) is never overwritten: the entity is re-read and the write decided again,
``VERSION_ATTEMPTS`` times; after that the record fails and the task's retry starts over.

XC returns components as a list; the records the backend hands the flows are XC's entities as
they come with a few components lifted to plain keys, so the mappings can reach them with plain
paths: ``Stripe`` (the integration's component), ``Contact`` (the ``ContactComponent``),
``ShippingParty`` (of the ``PhysicalFulfillmentComponent``) and ``FederatedPayments`` on
orders; ``Stripe`` and ``PhoneNumber`` (of the ``CustomerDetailsComponent``) on customers.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from typing import Any, TypeVar

import msgspec

from stripe_sitecore.backends.base import BackendMappings, OrderTotal, SitecoreBackend
from stripe_sitecore.backends.xc import reports
from stripe_sitecore.backends.xc.client import (
    CONTACT,
    CUSTOMER_PREFIX,
    XCAlreadyExists,
    XCClient,
    XCNotFound,
    XCVersionConflict,
    check_id,
    components,
    federated_payments,
    parse_instant,
    parse_money,
)
from stripe_sitecore.errors import ConfigurationError, InvalidId, RecordRefused
from stripe_sitecore.mapping import load_mapping
from stripe_sitecore.mapping.paths import Path, is_missing, set_target
from stripe_sitecore.money import MoneyError, to_minor_units

log = logging.getLogger(__name__)

MAPPINGS = BackendMappings(
    order_to_payment_intent="xc_order_to_payment_intent",
    payment_to_sitecore="stripe_payment_to_xc",
    refund_request_to_refund="xc_refund_request_to_stripe_refund",
    payment_state="xc_payment_state",
    order_to_erp="xc_order_to_erp",
    customer_to_stripe="xc_customer_to_stripe_customer",
    stripe_to_customer="stripe_customer_to_xc_customer",
)
ORDER_PREFIX = "Entity-Order-"
FULFILLMENT = "#Sitecore.Commerce.Plugin.Fulfillment.PhysicalFulfillmentComponent"
CUSTOMER_DETAILS = "#Sitecore.Commerce.Plugin.Customers.CustomerDetailsComponent"
# What a component carries besides its own fields (CommerceComponent's members).
COMPONENT_MEMBERS = frozenset(
    {"@odata.type", "Id", "Name", "Comments", "Policies", "ChildComponents"}
)
# The keys the backend adds to XC's entities (see the module docstring).
LIFTED = ("Stripe", "Contact", "ShippingParty", "FederatedPayments", "PhoneNumber")
ACTIVE, INACTIVE = "ActiveAccount", "InactiveAccount"
CUSTOMER_EDIT_FIELDS = ("FirstName", "LastName", "Email", "AccountStatus", "PhoneNumber")
DEFAULT_CUSTOMER_DOMAIN = "CommerceUsers"
# A stale Version is re-read and decided again this often before the record fails.
VERSION_ATTEMPTS = 4

T = TypeVar("T")
# Objects in component fields travel as JSON text; Decimals as exact JSON numbers, never floats.
_json_encoder = msgspec.json.Encoder(decimal_format="number", order="sorted")
_json_decoder = msgspec.json.Decoder(float_hook=Decimal)


@dataclass(frozen=True)
class PluginSettings:
    """The payment-state mapping's ``settings:``: the names of the engine plugin's component,
    view and action (as the XC administrator deployed it) and the statuses rules."""

    order_component: str
    order_view: str
    order_action: str
    customer_component: str
    customer_view: str
    customer_action: str
    json_fields: frozenset[str]
    replaceable_statuses: frozenset[str]
    hold_status: str
    annotation_fields: dict[str, str]

    @classmethod
    def load(cls) -> PluginSettings:
        mapping = load_mapping(MAPPINGS.payment_state)
        s = mapping.settings
        required = (
            "order_component", "order_view", "order_action", "customer_component",
            "customer_view", "customer_action", "replaceable_statuses",
        )  # fmt: skip
        missing = [name for name in required if not s.get(name)]
        if missing:
            raise ConfigurationError(
                f"{mapping.file}: settings {', '.join(missing)} missing (docs/xc.md)"
            )
        return cls(
            order_component=s["order_component"],
            order_view=s["order_view"],
            order_action=s["order_action"],
            customer_component=s["customer_component"],
            customer_view=s["customer_view"],
            customer_action=s["customer_action"],
            json_fields=frozenset(s.get("json_fields") or ()),
            replaceable_statuses=frozenset(s["replaceable_statuses"]),
            hold_status=s.get("hold_status") or "OnHold",
            annotation_fields={
                key.removesuffix("_field"): value
                for key, value in s.items()
                if key.endswith("_field") and isinstance(value, str)
            },
        )


class XCBackend(SitecoreBackend):
    id = "xc"
    title = "Sitecore XC"
    mappings = MAPPINGS
    # XC has no webhooks: changed orders come from the search index only.
    webhook_source = None

    def __init__(self, client: XCClient, *, customer_domain: str = DEFAULT_CUSTOMER_DOMAIN):
        self.client = client
        self.customer_domain = customer_domain

    @cached_property
    def plugin(self) -> PluginSettings:
        return PluginSettings.load()

    # --- records -------------------------------------------------------------------------
    def _fields(self, entity: dict[str, Any], odata_type: str) -> dict[str, Any] | None:
        found = components(entity, odata_type)
        if not found:
            return None
        return {k: copy.deepcopy(v) for k, v in found[0].items() if k not in COMPONENT_MEMBERS}

    def order_record(self, order: dict[str, Any]) -> dict[str, Any]:
        """The order entity with the lifted components (see the module docstring)."""
        record = {k: v for k, v in order.items() if k not in LIFTED}
        stripe = self._fields(order, self.plugin.order_component)
        if stripe is not None:
            record["Stripe"] = stripe
        contact = components(order, CONTACT)
        if contact:
            record["Contact"] = copy.deepcopy(contact[0])
        fulfillment = components(order, FULFILLMENT)
        if fulfillment and isinstance(fulfillment[0].get("ShippingParty"), dict):
            record["ShippingParty"] = copy.deepcopy(fulfillment[0]["ShippingParty"])
        record["FederatedPayments"] = copy.deepcopy(federated_payments(order))
        return record

    def customer_record(self, customer: dict[str, Any]) -> dict[str, Any]:
        record = {k: v for k, v in customer.items() if k not in LIFTED}
        stripe = self._fields(customer, self.plugin.customer_component)
        if stripe is not None:
            record["Stripe"] = stripe
        for details in components(customer, CUSTOMER_DETAILS):
            view = details.get("View") or {}
            for prop in view.get("Properties") or ():
                if prop.get("Name") == "PhoneNumber" and prop.get("Value"):
                    record["PhoneNumber"] = prop["Value"]
        return record

    def _as_order(self, order: dict[str, Any]) -> dict[str, Any]:
        """An order record, whether given one or XC's entity as it came."""
        return order if "FederatedPayments" in order else self.order_record(order)

    def _stripe(self, entity: dict[str, Any], component: str) -> dict[str, Any]:
        if isinstance(entity.get("Stripe"), dict):
            return entity["Stripe"]
        return self._fields(entity, component) or {}

    # --- orders --------------------------------------------------------------------------
    def changed_orders(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        # The search says which orders changed (it lags: the flow's overlap covers that);
        # each is re-read as it is now.
        return [self.order_record(o) for o in self.client.changed_orders(since, until)]

    def get_order(self, order_id: str) -> dict[str, Any]:
        self.check_order_id(order_id)
        return self.order_record(self.client.get_order(order_id))

    def check_order_id(self, order_id: Any) -> None:
        check_id(order_id, "order")
        if not order_id.startswith(ORDER_PREFIX) or order_id == ORDER_PREFIX:
            raise InvalidId("XC", "order", order_id, f"an order entity id, {ORDER_PREFIX}...")

    def order_id(self, order: dict[str, Any]) -> Any:
        return order.get("Id")

    def submitted_at(self, order: dict[str, Any]) -> datetime | None:
        placed = order.get("OrderPlacedDate")
        return parse_instant(placed, "OrderPlacedDate") if placed else None

    def order_version(self, order: dict[str, Any]) -> str:
        # XC orders are placed once (no resubmission): the placement stamp versions the key.
        return str(order.get("OrderPlacedDate") or "v1")

    def order_total(self, order: dict[str, Any]) -> OrderTotal:
        grand = (order.get("Totals") or {}).get("GrandTotal")
        try:
            total = parse_money(grand, "Totals.GrandTotal")
        except ValueError:
            shown = f"{(grand or {}).get('Amount')} {(grand or {}).get('CurrencyCode') or '?'}"
            currency = (grand or {}).get("CurrencyCode") if isinstance(grand, dict) else None
            return OrderTotal(None, (currency or "").lower(), shown)
        try:
            minor = to_minor_units(total.amount, total.currency)
        except (MoneyError, TypeError, ValueError):
            minor = None
        return OrderTotal(minor, total.currency.lower(), str(total))

    def shopper(self, order: dict[str, Any]) -> dict[str, Any] | None:
        """The order's contact as a customer record (id, e-mail, the shipping party's names):
        a registered shopper's id is the XC customer's."""
        record = self._as_order(order)
        contact = record.get("Contact")
        if not isinstance(contact, dict) or not contact.get("CustomerId"):
            return None
        party = record.get("ShippingParty") or {}
        return {
            "Id": contact["CustomerId"],
            "Email": contact.get("Email") or None,
            "FirstName": party.get("FirstName") or None,
            "LastName": party.get("LastName") or None,
            "IsRegistered": bool(contact.get("IsRegistered")),
        }

    def written_payment_intent(self, order: dict[str, Any]) -> str | None:
        return self._stripe(order, self.plugin.order_component).get("PaymentIntentId") or None

    def _payment_state(self, state: str) -> dict[str, Any]:
        result = load_mapping(MAPPINGS.payment_state).apply({"state": state})
        if result.outcome != "map":
            raise ConfigurationError(f"{MAPPINGS.payment_state}: {result.rule}: {result.reason}")
        return result.payload

    def shows_payment_state(self, order: dict[str, Any], state: str) -> bool:
        wanted = self._payment_state(state)
        stripe = self._stripe(order, self.plugin.order_component)
        shown = stripe.get("PaymentStatus") == (wanted.get("Stripe") or {}).get("PaymentStatus")
        status = order.get("Status")
        # A status the integration may not replace shows the state as well as it can.
        status_ok = status == wanted.get("Status") or status not in self.plugin.replaceable_statuses
        return shown and status_ok

    # --- writes ---------------------------------------------------------------------------
    def write_payment_state(self, order_id: str, payload: dict[str, Any]) -> None:
        self.annotate(order_id, payload)

    def annotate(self, order_id: str, patch: dict[str, Any]) -> None:
        """``patch`` is ``{Status?, Stripe?: {field: value, ...}}`` as the mappings make it:
        the fields go into the integration's component (objects merged member by member, None
        removes), the status is set if the order's status is one the integration may
        replace."""
        if not patch:
            return
        unknown = sorted(set(patch) - {"Status", "Stripe"})
        if unknown:
            raise ConfigurationError(
                f"an XC order patch holds Status and Stripe only, not {', '.join(unknown)} "
                "(check the xc_ mapping files)"
            )
        fields = patch.get("Stripe") or {}
        status = patch.get("Status")

        def write() -> dict[str, Any]:
            order = self.client.get_order(order_id)
            current = self._stripe(order, self.plugin.order_component)
            merged = _merged(current, fields)
            written = set(fields)
            if (
                current.get("PaymentHold")
                and "PaymentHold" not in fields
                and order.get("Status") != self.plugin.hold_status
            ):
                merged.pop("PaymentHold", None)  # our hold is over: the marker goes with it
                written.add("PaymentHold")
            # Only the fields written are compared and sent: the view echoes the others.
            changes = {
                name: self._property_text(name, merged.get(name))
                for name in sorted(written)
                if self._stored(name, merged.get(name)) != current.get(name)
            }
            if changes:
                self.client.run_action(
                    order_id, self.plugin.order_view, self.plugin.order_action, values=changes
                )
            return order

        order = self._versioned(write, f"order {order_id}")
        self._set_status(order, status)

    def _set_status(self, order: dict[str, Any], status: str | None) -> bool:
        current = order.get("Status")
        if not status or status == current:
            return False
        if current not in self.plugin.replaceable_statuses:
            log.info("order %s is %s: its status is not the integration's to replace "
                     "(the payment state %s shows in its component)", order.get("Id"), current,
                     status)  # fmt: skip
            return False
        self.client.set_order_status(order["Id"], status)
        return True

    def _property_text(self, name: str, value: Any) -> str:
        """A component field as the plugin's view takes it: text; JSON for objects; an empty
        value removes the field."""
        if value is None:
            return ""
        if _has_float(value):
            raise ConfigurationError(f"{name}: a float never carries a value to XC ({value!r})")
        if name in self.plugin.json_fields or isinstance(value, dict | list):
            return _json_encoder.encode(value).decode()
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, Decimal):
            return format(value, "f")
        return str(value)

    def _stored(self, name: str, value: Any) -> Any:
        """What the plugin keeps for ``value`` (text, or the object its JSON text says): the
        form to compare with what the order shows."""
        text = self._property_text(name, value)
        if text == "":
            return None
        if name in self.plugin.json_fields or isinstance(value, dict | list):
            return _json_decoder.decode(text)
        return text

    def _versioned(self, write: Callable[[], T], what: str) -> T:
        """Run ``write`` (which re-reads the entity and decides what to send); a stale Version
        re-reads and decides again, never sends the old decision."""
        for attempt in range(1, VERSION_ATTEMPTS + 1):
            try:
                return write()
            except XCVersionConflict:
                if attempt == VERSION_ATTEMPTS:
                    raise
                log.info("%s changed while we wrote it (attempt %d): re-reading", what, attempt)
        raise AssertionError("unreachable")

    def record_payment(self, order_id: str, payload: dict[str, Any]) -> None:
        """Hold the order (AddPayment needs it ``OnHold``), add the federated payment, set the
        paid status; each step is skipped when already done, so a retry finishes a crash."""
        payment = payload["payment"]
        paid_status = (payload.get("order_patch") or {}).get("Status")
        pi_id, charge_id = payment["PaymentIntentId"], payment["ChargeId"]
        hold = self.plugin.hold_status
        order = self.client.get_order(order_id)
        marker = self._stripe(order, self.plugin.order_component).get("PaymentHold")
        ours = marker == pi_id
        if not _has_charge(order, charge_id) and order.get("Status") != hold:
            # The marker first: a crash after the hold leaves an order we know we held.
            self.annotate(order_id, {"Stripe": {"PaymentHold": pi_id}})
            self.client.set_order_status(order_id, hold)
            ours = True
        elif order.get("Status") == hold and not ours:
            log.info("order %s was put on hold by someone else: the payment is added and the "
                     "hold left for them", order_id)  # fmt: skip

        def add() -> bool:
            try:
                return self.client.add_federated_payment(
                    order_id,
                    payment_intent_id=pi_id,
                    charge_id=charge_id,
                    amount=_decimal(payment.get("Amount"), "payment Amount"),
                    currency=payment["Currency"],
                    payment_method=payment.get("PaymentMethodName") or "Stripe",
                    transaction_status=payment.get("TransactionStatus") or "Captured",
                    masked_number=payment.get("MaskedNumber"),
                    card_type=payment.get("CardType"),
                    expires_month=payment.get("ExpiresMonth"),
                    expires_year=payment.get("ExpiresYear"),
                    billing=payment.get("Billing"),
                )
            except ValueError as exc:
                raise RecordRefused("xc.payment_not_recordable", str(exc)) from exc

        added = self._versioned(add, f"order {order_id}")
        if ours:
            current = self.client.get_order(order_id)
            if current.get("Status") == hold and paid_status:
                self.client.set_order_status(order_id, paid_status)
        log.info("order %s: federated payment %s %s", order_id, pi_id,
                 "added" if added else "was already there")  # fmt: skip

    def record_refund(self, order_id: str, payload: dict[str, Any]) -> bool:
        """``RefundPayment`` of the Stripe refund on the order's federated payment; False if
        XC has it already. Never more than the payment still holds: a refund that would be is
        refused with the amounts (a person reconciles it)."""
        refund = payload["refund_transaction"]
        payment_id = payload["refund_payment_id"]
        refund_id = refund["ID"]
        amount = _decimal(refund.get("Amount"), "refund Amount")
        if amount < 0:
            amount = -amount

        def record() -> bool:
            if self.client.refund_recorded(order_id, refund_id):
                return False
            order = self.client.get_order(order_id)
            held = next((p for p in federated_payments(order) if p.get("Id") == payment_id), None)
            left = parse_money(held["Amount"], "payment Amount").amount if held else Decimal(0)
            if amount > left:
                raise RecordRefused(
                    "xc.refund_exceeds_payment",
                    f"refund {refund_id} of {amount} {refund.get('Currency')} is more than "
                    f"payment {payment_id} of order {order_id} still holds ({left}); not "
                    "recorded",
                    {"order_id": order_id, "refund_id": refund_id, "left": str(left)},
                )
            try:
                return self.client.refund_payment(
                    order_id,
                    payment_id,
                    amount=amount,
                    currency=refund["Currency"],
                    refund_id=refund_id,
                )
            except ValueError as exc:
                raise RecordRefused("xc.refund_not_recordable", str(exc)) from exc

        return self._versioned(record, f"order {order_id}")

    def _annotation_path(self, name: str) -> Path:
        field = self.plugin.annotation_fields.get(name)
        if not field:
            raise ConfigurationError(f"{MAPPINGS.payment_state}: no {name}_field in its settings")
        return Path.parse(field)

    def annotation(self, order: dict[str, Any], name: str) -> Any:
        value = self._annotation_path(name).get(self._as_order(order))
        return None if is_missing(value) else value

    def annotation_patch(self, name: str, value: Any) -> dict[str, Any]:
        patch: dict[str, Any] = {}
        set_target(patch, tuple(str(p) for p in self._annotation_path(name).parts), value)
        return patch

    # --- customers ------------------------------------------------------------------------
    def customer_scope(self) -> str:
        # XC customers belong to the engine's customer domain, not to a shop.
        return self.customer_domain

    def list_customers(self) -> Iterator[dict[str, Any]]:
        return (self.customer_record(c) for c in self.client.list_customers())

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        return self.customer_record(self.client.get_customer(customer_id))

    def create_customer(self, body: dict[str, Any]) -> dict[str, Any]:
        """``AddCustomer`` named by the body's ``ID`` (its AccountNumber is the id without
        ``Entity-Customer-``), then the Stripe link. A retried create finds the customer the
        first try made; an e-mail another customer has raises ``XCAlreadyExists``."""
        customer_id = body.get("ID") or ""
        check_id(customer_id, "customer")
        account = customer_id.removeprefix(CUSTOMER_PREFIX)
        if account == customer_id or not account:
            raise RecordRefused(
                "xc.customer_id", f"{customer_id!r} is not {CUSTOMER_PREFIX}<account number>"
            )
        try:
            created = self.client.add_customer(
                email=body["Email"],
                first_name=body.get("FirstName") or "",
                last_name=body.get("LastName") or "",
                account_status=body.get("AccountStatus") or ACTIVE,
                phone_number=body.get("PhoneNumber"),
                account_number=account,
            )
        except XCAlreadyExists as taken:
            # Ours, if the id we name it by exists: a create that committed before its answer
            # was lost. Else the e-mail is another customer's, which the flow deals with.
            try:
                created = self.client.get_customer(customer_id)
            except XCNotFound:
                raise taken from None
        except ValueError as exc:
            raise RecordRefused("xc.customer_not_creatable", str(exc)) from exc
        if created.get("Id") != customer_id:
            raise ConfigurationError(
                f"XC made customer {created.get('Id')} for AccountNumber {account}, not "
                f"{customer_id}: the engine plugin that names customers by AccountNumber is "
                "missing (docs/xc.md); set create_sitecore_users: false until it is deployed"
            )
        if body.get("Stripe"):
            self._write_customer_component(customer_id, body["Stripe"])
        return self.get_customer(customer_id)

    def update_customer(self, customer_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """``EditCustomer`` with the patch's customer fields, ``EditStripeCustomer`` with its
        ``Stripe`` ones. A concurrent edit of the very fields being written is not overwritten:
        the record fails (retryable) and the next run compares again."""
        unknown = sorted(set(patch) - set(CUSTOMER_EDIT_FIELDS) - {"Stripe"})
        if unknown:
            raise ConfigurationError(
                f"cannot write XC customer field(s) {', '.join(unknown)}; editable: "
                f"{', '.join(CUSTOMER_EDIT_FIELDS)} and Stripe"
            )
        plain = {k: ("" if v is None else v) for k, v in patch.items() if k != "Stripe"}
        if plain:
            self._edit(customer_id, "Details", "EditCustomer", plain)
            log.info("customer %s: %s written", customer_id, ", ".join(sorted(plain)))
        if patch.get("Stripe"):
            self._write_customer_component(customer_id, patch["Stripe"])
        return self.get_customer(customer_id)

    def _write_customer_component(self, customer_id: str, fields: dict[str, Any]) -> None:
        values = {name: self._property_text(name, value) for name, value in fields.items()}
        self._edit(customer_id, self.plugin.customer_view, self.plugin.customer_action, values)

    def _edit(self, entity_id: str, view_name: str, action: str, values: dict[str, Any]):
        """One entity-view action; on a stale Version, retried only if the fields it writes
        still hold what they held when first read (someone else's change to other fields
        survives; a change to these is left for the next comparison)."""
        first: dict[str, Any] | None = None
        for attempt in range(1, VERSION_ATTEMPTS + 1):
            view = self.client.entity_view(entity_id, view_name, for_action=action)
            shown = {
                p.get("Name"): p.get("Value")
                for p in view.get("Properties") or ()
                if p.get("Name") in values
            }
            if first is None:
                first = shown
            elif shown != first:
                raise XCVersionConflict(
                    200,
                    "PUT",
                    "/api/DoUxAction()",
                    [{"Code": "ValidationError", "CommerceTermKey": "EntityVersionMismatch",
                      "Text": f"{entity_id}: {', '.join(sorted(values))} changed meanwhile"}],
                )  # fmt: skip
            try:
                return self.client.do_action(view, action, values=values, customer_id=entity_id)
            except XCVersionConflict:
                if attempt == VERSION_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def customer_id(self, customer: dict[str, Any]) -> str:
        return customer["Id"]

    def customer_active(self, customer: dict[str, Any]) -> bool | None:
        status = customer.get("AccountStatus")
        if status == ACTIVE:
            return True
        if status == INACTIVE:
            return False
        return None

    def customer_scope_of(self, customer: dict[str, Any]) -> str | None:
        return customer.get("Domain")

    def stripe_link(self, customer: dict[str, Any]) -> str | None:
        return self._stripe(customer, self.plugin.customer_component).get("CustomerId") or None

    def link_patch(self, stripe_customer_id: str | None) -> dict[str, Any]:
        return {"Stripe": {"CustomerId": stripe_customer_id}}

    def deactivate_patch(self) -> dict[str, Any]:
        return {"AccountStatus": INACTIVE}

    def activate_patch(self) -> dict[str, Any]:
        return {"AccountStatus": ACTIVE}

    def new_customer(
        self, payload: dict[str, Any], customer_id: str, placeholder_name: str
    ) -> dict[str, Any]:
        # XC needs an e-mail (and a password, which the client makes); names may stay empty.
        return {**payload, "ID": customer_id, "AccountStatus": ACTIVE}

    # --- reports -------------------------------------------------------------------------
    def report_orders(
        self, start: datetime, end: datetime, *, submitted_from: datetime
    ) -> Iterator[dict[str, Any]]:
        for order in reports.window_orders(self.client, start, end, submitted_from=submitted_from):
            yield self.order_record(order)

    def report_rows(self, orders: Iterable[dict[str, Any]], day: Any, settings) -> Iterator[dict]:
        if settings.read_payments:
            pairs = reports.with_sales_activities(self.client, orders)
        else:
            pairs = ((order, None) for order in orders)
        for order, activities in pairs:
            yield reports.order_row(
                order, activities, day, settings, self._stripe(order, self.plugin.order_component)
            )

    def countries(self, order: dict[str, Any]) -> tuple[str | None, str | None]:
        record = self._as_order(order)
        billing = None
        for payment in record.get("FederatedPayments") or ():
            billing = _country(payment.get("BillingParty"))
            if billing:
                break
        return billing, _country(record.get("ShippingParty"))

    def close(self) -> None:
        self.client.close()


def _country(party: Any) -> str | None:
    if not isinstance(party, dict):
        return None
    code = party.get("CountryCode") or party.get("Country")
    return code.upper() if isinstance(code, str) and code.strip() else None


def _has_charge(order: dict[str, Any], charge_id: str) -> bool:
    return any(p.get("TransactionId") == charge_id for p in federated_payments(order))


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise RecordRefused("xc.amount_not_exact", f"{what} {value!r} is not an exact amount")
    return Decimal(value)


def _merged(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` over ``current``: objects member by member, None removes."""
    merged = copy.deepcopy(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _has_float(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False
