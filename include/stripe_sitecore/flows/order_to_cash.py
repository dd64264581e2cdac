"""Order to cash: Sitecore orders become PaymentIntents; Stripe payments mark the orders paid.

Both directions are safe to run any number of times over any window: PaymentIntents are created
with a deterministic idempotency key and linked in the state DB; OrderCloud payments and
transactions use the Stripe ids as their IDs (409 means already done); the ledger moves an order's
state forward only, and the ERP outbox row is written in the same transaction as that move.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import stripe

from stripe_sitecore.clients.ordercloud import Filters, OrderCloudClient, OrderCloudError
from stripe_sitecore.clients.stripe_gateway import StripeGateway, idempotency_key
from stripe_sitecore.flows.common import RunSummary, Window
from stripe_sitecore.mapping import Mapping, load_mapping
from stripe_sitecore.money import from_minor_units
from stripe_sitecore.store.state import ORDER_STATE_RANK, StateStore
from stripe_sitecore.validation import jsonable, quarantine_failures, validate_batch

log = logging.getLogger(__name__)

BACKEND = "ordercloud"
SOURCE_ORDERS = "ordercloud.orders"
SOURCE_STRIPE_EVENTS = "stripe.events"
ERP_TOPIC = "erp.orders"

# OrderCloud's order list is a search index that trails writes; Stripe lists trail `created`.
ORDER_LIST_OVERLAP = timedelta(minutes=10)
STRIPE_EVENT_OVERLAP = timedelta(minutes=10)

PAYMENT_EVENT_TYPES = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.requires_action",
    "payment_intent.canceled",
)

# Ledger state -> xp.PaymentStatus written on the Sitecore order.
SITECORE_PAYMENT_STATUS = {
    "awaiting_payment": "AwaitingPayment",
    "requires_action": "RequiresAction",
    "payment_failed": "Failed",
    "canceled": "Canceled",
    "paid": "Paid",
}

# Errors a task retry may cure; the batch goes on and the task fails at the end.
_RETRYABLE = (OrderCloudError, requests.RequestException, stripe.StripeError)


# --- Sitecore -> Stripe ------------------------------------------------------------------

ORDER_MAPPING = "ordercloud_order_to_payment_intent"


def sync_orders_to_stripe(
    ordercloud: OrderCloudClient, stripe_gateway: StripeGateway, store: StateStore, window: Window
) -> RunSummary:
    """Push the orders updated in the window (re-reading the overlap) to Stripe."""
    filters = Filters().not_less("LastUpdated", window.read_from).less("LastUpdated", window.end)
    orders = list(ordercloud.list_orders(filters))
    summary = push_orders(orders, ordercloud, stripe_gateway, store)
    summary.log(log, f"orders {window.read_from:%Y-%m-%dT%H:%M}..{window.end:%H:%M}")
    return summary


def push_orders(
    orders: list[dict[str, Any]],
    ordercloud: OrderCloudClient,
    stripe_gateway: StripeGateway,
    store: StateStore,
) -> RunSummary:
    """Map, validate and push orders to Stripe; quarantine what cannot be sent exactly.

    The one code path for scheduled runs, backfills and dead-letter replays.
    """
    summary = RunSummary()
    mapping = load_mapping(ORDER_MAPPING)
    by_id = {order["ID"]: order for order in orders}
    summary.read = len(by_id)

    candidates: dict[str, dict[str, Any]] = {}
    for order_id, order in sorted(by_id.items()):
        try:
            if not _finish_linked_order(order, ordercloud, store, summary):
                _map_order(order, mapping, store, summary, candidates)
        except _RETRYABLE as exc:
            summary.fail(f"order {order_id}", exc, log)

    passed = _validated(candidates, by_id, store, summary)
    for order_id in passed:
        try:
            _create_payment_intent(by_id[order_id], candidates[order_id], stripe_gateway, store)
            ordercloud.patch_order(
                order_id, _payment_xp(_linked_pi(store, order_id), "awaiting_payment")
            )
            summary.created += 1
        except _RETRYABLE as exc:
            summary.fail(f"order {order_id}", exc, log)
    return summary


def _finish_linked_order(
    order: dict[str, Any], ordercloud: OrderCloudClient, store: StateStore, summary: RunSummary
) -> bool:
    """True if the order already has its PaymentIntent (finishing a lost write-back if needed)."""
    with store.begin() as tx:
        link = tx.get_order_link(BACKEND, order["ID"])
    if link is None:
        return False
    if (order.get("xp") or {}).get("StripePaymentIntentID") == link.payment_intent_id:
        summary.skipped += 1
    else:
        # Linked but the write-back was lost (a crash between the two): finish it.
        ordercloud.patch_order(order["ID"], _payment_xp(link.payment_intent_id, link.state))
        summary.updated += 1
    return True


def _map_order(
    order: dict[str, Any],
    mapping: Mapping,
    store: StateStore,
    summary: RunSummary,
    candidates: dict[str, dict[str, Any]],
) -> None:
    result = mapping.apply(order)
    if result.outcome == "skip":
        log.info("order %s skipped: %s", order["ID"], result.reason)
        summary.skipped += 1
    elif result.outcome == "reject":
        with store.begin() as tx:
            tx.quarantine(
                source=SOURCE_ORDERS,
                record_key=order["ID"],
                record=jsonable(order),
                rule=result.rule or "mapping",
                reason=result.reason or "rejected by the mapping",
            )
        log.warning("order %s quarantined (%s): %s", order["ID"], result.rule, result.reason)
        summary.quarantined += 1
    else:
        candidates[order["ID"]] = result.payload


def _validated(
    candidates: dict[str, dict[str, Any]],
    orders: dict[str, dict[str, Any]],
    store: StateStore,
    summary: RunSummary,
) -> list[str]:
    """Order ids whose payloads pass the Great Expectations suite; the rest are quarantined."""
    if not candidates:
        return []
    report = validate_batch("payment_intent_create", list(candidates.items()))
    log.info("validation: %s", report.summary())
    if report.failed:
        with store.begin() as tx:
            summary.quarantined += quarantine_failures(report, orders, tx, SOURCE_ORDERS)
    return sorted(report.passed)


def _create_payment_intent(
    order: dict[str, Any], params: dict[str, Any], stripe_gateway: StripeGateway, store: StateStore
) -> None:
    # The key survives task retries: same order, same submission, same PaymentIntent.
    key = idempotency_key(
        "create_payment_intent", f"{BACKEND}:{order['ID']}", order.get("DateSubmitted") or "v1"
    )
    payment_intent = stripe_gateway.create_payment_intent(params, key=key)
    with store.begin() as tx:
        tx.link_order(
            backend=BACKEND,
            order_id=order["ID"],
            payment_intent_id=payment_intent["id"],
            amount_minor=payment_intent["amount"],
            currency=payment_intent["currency"],
            stripe_customer_id=payment_intent.get("customer"),
        )
    log.info(
        "order %s -> %s (%s %s minor units)",
        order["ID"],
        payment_intent["id"],
        payment_intent["amount"],
        payment_intent["currency"],
    )


def _linked_pi(store: StateStore, order_id: str) -> str | None:
    with store.begin() as tx:
        link = tx.get_order_link(BACKEND, order_id)
    return link.payment_intent_id if link else None


def _payment_xp(payment_intent_id: str | None, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "xp": {
            "PaymentStatus": SITECORE_PAYMENT_STATUS.get(state, "AwaitingPayment"),
            "StripePaymentIntentID": payment_intent_id,
            **extra,
        }
    }


# --- Stripe -> Sitecore ------------------------------------------------------------------


def apply_stripe_events(
    stripe_gateway: StripeGateway, ordercloud: OrderCloudClient, store: StateStore, window: Window
) -> RunSummary:
    summary = RunSummary()
    events = {
        event["id"]: event
        for event in stripe_gateway.iter_events(
            created_gte=window.read_from, created_lt=window.end, types=PAYMENT_EVENT_TYPES
        )
    }
    summary.read = len(events)
    with store.begin() as tx:
        done = tx.processed_event_ids(list(events))
    pending = sorted(
        (e for e in events.values() if e["id"] not in done), key=lambda e: e["created"]
    )
    summary.skipped += len(events) - len(pending)
    for event in pending:
        try:
            _apply_payment_event(event, stripe_gateway, ordercloud, store, summary)
        except _RETRYABLE as exc:
            summary.fail(f"event {event['id']}", exc, log)
    summary.log(log, f"stripe events {window.read_from:%Y-%m-%dT%H:%M}..{window.end:%H:%M}")
    return summary


def _apply_payment_event(
    event: dict[str, Any],
    stripe_gateway: StripeGateway,
    ordercloud: OrderCloudClient,
    store: StateStore,
    summary: RunSummary,
) -> None:
    # Re-read the object: the event may be stale or arrive out of order.
    payment_intent = stripe_gateway.retrieve_payment_intent(
        event["data"]["object"]["id"], expand=["latest_charge"]
    )
    metadata = payment_intent.get("metadata") or {}
    order_id = metadata.get("sitecore_order_id")
    event_created = datetime.fromtimestamp(event["created"], UTC)
    if not order_id or metadata.get("sitecore_backend", BACKEND) != BACKEND:
        with store.begin() as tx:
            tx.mark_event_processed(
                event["id"],
                source=SOURCE_STRIPE_EVENTS,
                event_type=event["type"],
                event_created=event_created,
                outcome="not_ours",
            )
        summary.skipped += 1
        return

    state = _ledger_state(payment_intent)
    with store.begin() as tx:
        link = tx.get_order_link(BACKEND, order_id)
    if link is None:
        # Created outside this run's bookkeeping (or the link was lost): adopt it.
        with store.begin() as tx:
            link = tx.link_order(
                backend=BACKEND,
                order_id=order_id,
                payment_intent_id=payment_intent["id"],
                amount_minor=payment_intent["amount"],
                currency=payment_intent["currency"],
                stripe_customer_id=payment_intent.get("customer"),
            )

    outcome = "no_change"
    if state is not None and ORDER_STATE_RANK[state] >= ORDER_STATE_RANK[link.state]:
        if state == "paid" and link.state != "paid":
            _record_payment(order_id, payment_intent, ordercloud)
            outcome = "paid"
        elif state != "paid" and state != link.state:
            reason = (payment_intent.get("last_payment_error") or {}).get("message")
            extra = {"PaymentFailureReason": reason} if reason else {}
            ordercloud.patch_order(order_id, _payment_xp(payment_intent["id"], state, **extra))
            outcome = state

    charge = payment_intent.get("latest_charge")
    charge_id = charge["id"] if isinstance(charge, dict) else charge
    with store.begin() as tx:
        moved = state is not None and tx.advance_order_state(
            BACKEND, order_id, state, latest_charge_id=charge_id if state == "paid" else None
        )
        if moved and state == "paid":
            tx.enqueue(ERP_TOPIC, f"{BACKEND}:{order_id}", _erp_message(order_id, payment_intent))
        tx.mark_event_processed(
            event["id"],
            source=SOURCE_STRIPE_EVENTS,
            event_type=event["type"],
            event_created=event_created,
            outcome=outcome,
        )
    if outcome == "paid":
        summary.created += 1
    elif outcome == "no_change":
        summary.skipped += 1
    else:
        summary.updated += 1


def _ledger_state(payment_intent: dict[str, Any]) -> str | None:
    status = payment_intent["status"]
    if status == "succeeded":
        return "paid"
    if status == "canceled":
        return "canceled"
    if status == "requires_action":
        return "requires_action"
    if status == "requires_payment_method" and payment_intent.get("last_payment_error"):
        return "payment_failed"
    return None


def _record_payment(
    order_id: str, payment_intent: dict[str, Any], ordercloud: OrderCloudClient
) -> None:
    """Payment (ID = PaymentIntent id) + transaction (ID = charge id) + xp, each idempotent."""
    charge = payment_intent["latest_charge"]
    currency = payment_intent["currency"]
    amount = from_minor_units(payment_intent["amount_received"], currency)
    ordercloud.create_payment(
        order_id,
        {
            "ID": payment_intent["id"],
            "Type": "CreditCard",
            "Amount": amount,
            "Accepted": True,
            "Description": f"Stripe {payment_intent['id']}",
            "xp": {"StripePaymentIntentID": payment_intent["id"]},
        },
    )
    outcome = charge.get("outcome") or {}
    ordercloud.create_payment_transaction(
        order_id,
        payment_intent["id"],
        {
            "ID": charge["id"],
            "Type": "CreditCard",
            "DateExecuted": datetime.fromtimestamp(charge["created"], UTC).isoformat(),
            "Amount": from_minor_units(charge["amount_captured"], charge["currency"]),
            "Currency": charge["currency"].upper(),
            "Succeeded": True,
            "ResultCode": outcome.get("network_status") or charge["status"],
            "ResultMessage": outcome.get("seller_message") or "",
            "xp": {"StripeChargeID": charge["id"]},
        },
    )
    ordercloud.patch_order(
        order_id, _payment_xp(payment_intent["id"], "paid", StripeChargeID=charge["id"])
    )


def _erp_message(order_id: str, payment_intent: dict[str, Any]) -> dict[str, Any]:
    charge = payment_intent["latest_charge"]
    return {
        "backend": BACKEND,
        "order_id": order_id,
        "payment_intent_id": payment_intent["id"],
        "charge_id": charge["id"] if isinstance(charge, dict) else charge,
        "amount": str(
            from_minor_units(payment_intent["amount_received"], payment_intent["currency"])
        ),
        "currency": payment_intent["currency"].upper(),
    }
