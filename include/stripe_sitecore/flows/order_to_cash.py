"""Order to cash: Sitecore orders become PaymentIntents; Stripe payments mark the orders paid.

Both directions are safe to run any number of times over any window: PaymentIntents are created,
updated and canceled with deterministic idempotency keys and linked in the state DB; OrderCloud
payments and transactions use the Stripe ids as their IDs (409 means already done); the ledger
moves an order's state forward only, and the ERP outbox row is written in the same transaction as
that move.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from stripe_sitecore.clients.http import InvalidId
from stripe_sitecore.clients.ordercloud import (
    Filters,
    OrderCloudClient,
    OrderCloudNotFound,
    segment,
)
from stripe_sitecore.clients.stripe_gateway import StripeGateway, idempotency_key
from stripe_sitecore.errors import ErrorKind, classify, request_digest
from stripe_sitecore.flows import after_payment
from stripe_sitecore.flows.common import (
    BACKEND,
    RETRYABLE_ERRORS,
    RunSummary,
    Window,
    quarantine,
    quarantine_refusal,
    run_each,
)
from stripe_sitecore.mapping import Mapping, MappingResult, load_mapping
from stripe_sitecore.money import MoneyError, from_minor_units, to_minor_units
from stripe_sitecore.provenance import METADATA_STAMP, made_by_us, stamp
from stripe_sitecore.store.state import ORDER_STATE_RANK, OrderLink, StateStore
from stripe_sitecore.validation import quarantine_failures, validate_batch
from stripe_sitecore.webhooks.events import SOURCE_ORDERCLOUD as WEBHOOK_SOURCE_ORDERCLOUD
from stripe_sitecore.webhooks.events import SOURCE_STRIPE as WEBHOOK_SOURCE_STRIPE

log = logging.getLogger(__name__)

SOURCE_ORDERS = "ordercloud.orders"
SOURCE_PAYMENTS = "stripe.payment_intents"
SOURCE_STRIPE_EVENTS = "stripe.events"
ERP_TOPIC = "erp.orders"

ORDER_MAPPING = "ordercloud_order_to_payment_intent"
PAYMENT_MAPPING = "stripe_payment_to_ordercloud"

# OrderCloud's order list is a search index that trails writes; Stripe lists trail `created`.
ORDER_LIST_OVERLAP = timedelta(minutes=10)
STRIPE_EVENT_OVERLAP = timedelta(minutes=10)
# Stripe keeps events 30 days; a day of margin keeps a window from straddling the edge.
EVENT_RETENTION = timedelta(days=29)
# Stripe lists events for 30 days and retries a webhook for 3: an event id older than this can
# never be delivered again, so the ledger and the inbox forget it.
EVENT_IDS_KEPT = timedelta(days=35)

# Stripe allows 20 types per events request.
PAYMENT_EVENT_TYPES = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.requires_action",
    "payment_intent.amount_capturable_updated",
    "payment_intent.canceled",
    "charge.succeeded",
    "charge.refunded",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "radar.early_fraud_warning.created",
    "radar.early_fraud_warning.updated",
)

# Ledger states in which the customer has not paid, so the PaymentIntent may still change.
UNPAID_STATES = frozenset({"awaiting_payment", "payment_failed", "requires_action"})
# Ledger states in which nothing was captured: canceling the PaymentIntent ends it (an
# authorization is released).
CANCELABLE_STATES = UNPAID_STATES | {"authorized"}
# Ledger states in which the money was captured (the OrderCloud payment exists).
PAID_STATES = frozenset({"paid", "partially_refunded", "refunded"})

# Ledger state -> xp.PaymentStatus for writes that do not go through the payment mapping.
SITECORE_PAYMENT_STATUS = {
    "awaiting_payment": "AwaitingPayment",
    "requires_action": "RequiresAction",
    "payment_failed": "Failed",
    "authorized": "AwaitingPayment",
    "canceled": "Canceled",
    "paid": "Paid",
    "partially_refunded": "PartiallyRefunded",
    "refunded": "Refunded",
}

# --- Sitecore -> Stripe ------------------------------------------------------------------


def sync_orders_to_stripe(
    ordercloud: OrderCloudClient, stripe_gateway: StripeGateway, store: StateStore, window: Window
) -> RunSummary:
    """Push the orders updated in the window (re-reading the overlap) to Stripe."""
    filters = Filters().not_less("LastUpdated", window.read_from).less("LastUpdated", window.end)
    orders = list(ordercloud.list_orders(filters))
    orders += _hinted_orders(ordercloud, store, window, listed={o["ID"] for o in orders})
    summary = push_orders(orders, ordercloud, stripe_gateway, store)
    summary.log(log, f"orders {window.read_from:%Y-%m-%dT%H:%M}..{window.end:%H:%M}")
    return summary


def _hinted_orders(
    ordercloud: OrderCloudClient, store: StateStore, window: Window, listed: set[str]
) -> list[dict[str, Any]]:
    """Orders named by the window's OrderCloud webhook deliveries that the (lagging) list did
    not return yet, read one by one. Only a hint: ``push_orders`` decides from the order itself."""
    with store.begin() as tx:
        hinted = tx.inbox_object_ids(WEBHOOK_SOURCE_ORDERCLOUD, window.read_from, window.end)
    found = []
    for order_id in hinted:
        if order_id in listed:
            continue
        try:
            found.append(ordercloud.get_order(order_id))
        except OrderCloudNotFound:
            log.info(
                "order %s named by a webhook does not exist (deleted, or another direction)",
                order_id,
            )
        except RETRYABLE_ERRORS as exc:
            # A hint must not fail the listed orders; the list brings this order in its turn.
            log.warning("order %s named by a webhook could not be read: %s", order_id, exc)
    return found


def push_orders(
    orders: list[dict[str, Any]],
    ordercloud: OrderCloudClient,
    stripe_gateway: StripeGateway,
    store: StateStore,
    *,
    replay: bool = False,
) -> RunSummary:
    """Decide and do, per order: create, update or cancel its PaymentIntent, skip or quarantine.

    The one code path for scheduled runs, backfills and dead-letter replays. A create Stripe
    refused for good is not sent again with the same parameters, except by a ``replay``.
    """
    summary = RunSummary()
    mapping = load_mapping(ORDER_MAPPING)
    by_id: dict[str, dict[str, Any]] = {}
    for order in orders:
        problem = _id_problem(order)
        if problem is not None:
            quarantine_refusal(
                store, summary, problem, source=SOURCE_ORDERS, key=order.get("ID"), record=order
            )
        else:
            by_id[order["ID"]] = order
    summary.read = len(by_id) + summary.quarantined
    with store.begin() as tx:
        links = {oid: link for oid in by_id if (link := tx.get_order_link(BACKEND, oid))}
        refused = tx.refused_requests(SOURCE_ORDERS, [oid for oid in by_id if oid not in links])
        instance_id = tx.instance_id()

    new_orders: dict[str, dict[str, Any]] = {}
    linked_work: list[tuple[dict[str, Any], OrderLink, MappingResult]] = []
    for order_id, order in sorted(by_id.items()):
        result = mapping.apply(order)
        if order_id in links:
            linked_work.append((order, links[order_id], result))
        elif result.outcome == "skip":
            log.info("order %s skipped: %s", order_id, result.reason)
            summary.skipped += 1
        elif result.outcome == "reject":
            _quarantine_order(order, result.rule, result.reason, store, summary)
        else:
            payload = result.payload
            payload.setdefault("metadata", {})[METADATA_STAMP] = stamp(
                instance_id, BACKEND, order_id
            )
            if request_digest(payload) in refused.get(order_id, ()) and not replay:
                log.warning(
                    "order %s: Stripe refused this PaymentIntent before and the order has not "
                    "changed; not sending it again (replay its dead letter after a fix)",
                    order_id,
                )
                summary.skipped += 1
                continue
            new_orders[order_id] = payload

    passed = _validated(new_orders, by_id, store, summary)
    run_each(
        passed,
        lambda oid: _create_payment_intent(
            by_id[oid], new_orders[oid], instance_id, stripe_gateway, ordercloud, store, summary
        ),
        lambda oid: f"order {oid}",
        summary,
        on_refused=lambda oid, exc: quarantine_refusal(
            store,
            summary,
            exc,
            source=SOURCE_ORDERS,
            key=oid,
            record=by_id[oid],
            request_digest=request_digest(new_orders[oid]),
        ),
    )
    run_each(
        linked_work,
        lambda work: _update_linked_order(*work, stripe_gateway, ordercloud, store, summary),
        lambda work: f"order {work[0]['ID']}",
        summary,
        on_refused=lambda work, exc: quarantine_refusal(
            store, summary, exc, source=SOURCE_ORDERS, key=work[0]["ID"], record=work[0]
        ),
    )
    return summary


def _id_problem(order: dict[str, Any]) -> InvalidId | None:
    """An order whose ID OrderCloud could not have given (ids come back to us in webhooks and
    metadata): refused before anything is written anywhere."""
    try:
        segment(order.get("ID"), "order")
    except InvalidId as exc:
        return exc
    return None


def _quarantine_order(
    order: dict[str, Any], rule: str | None, reason: str | None, store: StateStore, summary
) -> None:
    quarantine(
        store,
        summary,
        source=SOURCE_ORDERS,
        key=order["ID"],
        record=order,
        rule=rule,
        reason=reason,
    )


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
    order: dict[str, Any],
    params: dict[str, Any],
    instance_id: str,
    stripe_gateway: StripeGateway,
    ordercloud: OrderCloudClient,
    store: StateStore,
    summary: RunSummary,
) -> None:
    customer_id = _stripe_customer(order, stripe_gateway, store)
    if customer_id:
        params = {**params, "customer": customer_id}
    # The key survives task retries: same order, same submission, same PaymentIntent.
    key = idempotency_key(
        "create_payment_intent", f"{BACKEND}:{order['ID']}", order.get("DateSubmitted") or "v1"
    )
    payment_intent = stripe_gateway.create_payment_intent(
        params,
        key=key,
        look_up_after=_submitted_at(order),
        # Past Stripe's key memory, a PaymentIntent found by metadata is ours only if stamped.
        accept=lambda found: made_by_us(found, instance_id, BACKEND, order["ID"]),
    )
    with store.begin() as tx:
        tx.link_order(
            backend=BACKEND,
            order_id=order["ID"],
            payment_intent_id=payment_intent["id"],
            amount_minor=payment_intent["amount"],
            currency=payment_intent["currency"],
            stripe_customer_id=payment_intent.get("customer"),
        )
    ordercloud.patch_order(order["ID"], _payment_xp(payment_intent["id"], "awaiting_payment"))
    log.info(
        "order %s -> %s (%s %s minor units)",
        order["ID"],
        payment_intent["id"],
        payment_intent["amount"],
        payment_intent["currency"],
    )
    summary.created += 1


def _stripe_customer(
    order: dict[str, Any], stripe_gateway: StripeGateway, store: StateStore
) -> str | None:
    """The buyer's linked Stripe customer, found by exact email or created; None if the user
    cannot be mapped (the payment goes on without a customer rather than not at all)."""
    from stripe_sitecore.flows.customers import CustomerNotMappable, ensure_stripe_customer

    user = order.get("FromUser")
    if not user or not user.get("ID"):
        return None
    try:
        return ensure_stripe_customer(user, stripe_gateway, store)
    except CustomerNotMappable as exc:
        log.warning("order %s: no Stripe customer for user %s: %s", order["ID"], user["ID"], exc)
        return None


def _submitted_at(order: dict[str, Any]) -> datetime | None:
    """When the create key was first sent at the earliest; past 24 h Stripe may forget it."""
    submitted = order.get("DateSubmitted")
    if not submitted:
        return None
    return datetime.fromisoformat(str(submitted).replace("Z", "+00:00"))


def _update_linked_order(
    order: dict[str, Any],
    link: OrderLink,
    result: MappingResult,
    stripe_gateway: StripeGateway,
    ordercloud: OrderCloudClient,
    store: StateStore,
    summary: RunSummary,
) -> None:
    """An order that already has a PaymentIntent: follow a cancel or a new total, never charge."""
    order_id = order["ID"]
    if link.state in PAID_STATES and after_payment.refund_from_sitecore(
        order, link, stripe_gateway, store, summary
    ):
        return
    if after_payment.order_closed(order):
        _cancel_unpaid(order, link, stripe_gateway, ordercloud, store, summary)
        return
    if result.outcome == "reject":
        _quarantine_order(order, result.rule, result.reason, store, summary)
        return
    if result.outcome == "map":
        amount, currency = result.payload["amount"], result.payload["currency"]
        if (amount, currency) != (link.amount_minor, link.currency):
            _follow_new_total(order, link, amount, currency, stripe_gateway, store, summary)
            return
    if (order.get("xp") or {}).get("StripePaymentIntentID") != link.payment_intent_id:
        # Linked but the write-back was lost (a crash between the two): finish it.
        ordercloud.patch_order(order_id, _payment_xp(link.payment_intent_id, link.state))
        summary.updated += 1
        return
    summary.skipped += 1


def _cancel_unpaid(
    order: dict[str, Any],
    link: OrderLink,
    stripe_gateway: StripeGateway,
    ordercloud: OrderCloudClient,
    store: StateStore,
    summary: RunSummary,
) -> None:
    """A canceled or declined order: cancel its PaymentIntent if nothing was captured (an
    authorization is released), so no PaymentIntent is left for the customer to pay."""
    order_id = order["ID"]
    changed = False
    if link.state in CANCELABLE_STATES:
        current = stripe_gateway.retrieve_payment_intent(link.payment_intent_id)
        if current["status"] in ("succeeded", "processing"):
            # Paid meanwhile: the payment flow records it, then the refund settings apply.
            log.info("order %s is %s but %s is %s: not canceled", order_id, order.get("Status"),
                     link.payment_intent_id, current["status"])  # fmt: skip
            summary.skipped += 1
            return
        if current["status"] != "canceled":
            stripe_gateway.cancel_payment_intent(
                link.payment_intent_id,
                {"cancellation_reason": "abandoned"},
                key=idempotency_key("cancel_payment_intent", f"{BACKEND}:{order_id}", 1),
            )
        with store.begin() as tx:
            tx.advance_order_state(BACKEND, order_id, "canceled")
        log.info("order %s %s before capture: %s canceled", order_id, order.get("Status"),
                 link.payment_intent_id)  # fmt: skip
        changed = True
    elif link.state != "canceled":
        # Captured: refunds follow the refund settings, not a cancel.
        summary.skipped += 1
        return
    if (order.get("xp") or {}).get("PaymentStatus") != "Canceled":
        ordercloud.patch_order(order_id, _payment_xp(link.payment_intent_id, "canceled"))
        changed = True
    if changed:
        summary.updated += 1
    else:
        summary.skipped += 1


def _follow_new_total(
    order: dict[str, Any],
    link: OrderLink,
    amount: int,
    currency: str,
    stripe_gateway: StripeGateway,
    store: StateStore,
    summary: RunSummary,
) -> None:
    order_id = order["ID"]
    if link.state in UNPAID_STATES and currency == link.currency:
        stripe_gateway.update_payment_intent(
            link.payment_intent_id,
            {"amount": amount},
            key=idempotency_key("update_payment_intent_amount", f"{BACKEND}:{order_id}", amount),
        )
        with store.begin() as tx:
            tx.link_order(
                backend=BACKEND,
                order_id=order_id,
                payment_intent_id=link.payment_intent_id,
                amount_minor=amount,
                currency=currency,
            )
        log.info(
            "order %s total changed: %s now %s %s",
            order_id,
            link.payment_intent_id,
            amount,
            currency,
        )
        summary.updated += 1
        return
    # Paid (or a currency switch): charging or refunding the difference is a person's decision.
    was = f"{from_minor_units(link.amount_minor, link.currency)} {link.currency.upper()}"
    now = f"{from_minor_units(amount, currency)} {currency.upper()}"
    _quarantine_order(
        order,
        "order.total_changed_after_payment"
        if link.state not in UNPAID_STATES
        else "order.currency_changed",
        f"order total changed from {was} to {now} while the payment is {link.state}; "
        "reconcile by hand (nothing was charged or refunded)",
        store,
        summary,
    )


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
    stripe_gateway: StripeGateway,
    ordercloud: OrderCloudClient,
    store: StateStore,
    window: Window,
    *,
    now: datetime | None = None,
) -> RunSummary:
    """Move orders forward from the window's payment events (list endpoints past retention)."""
    now = now or datetime.now(UTC)
    if window.end < now - EVENT_RETENTION:
        summary = _apply_listed_payments(stripe_gateway, ordercloud, store, window)
    else:
        summary = _apply_events(stripe_gateway, ordercloud, store, window)
        with store.begin() as tx:
            forgotten = tx.forget_events_before(window.end - EVENT_IDS_KEPT)
        if any(forgotten.values()):
            log.info("forgot event ids older than %s: %s", EVENT_IDS_KEPT, forgotten)
    summary.log(log, f"stripe payments {window.read_from:%Y-%m-%dT%H:%M}..{window.end:%H:%M}")
    return summary


def _apply_events(
    stripe_gateway: StripeGateway, ordercloud: OrderCloudClient, store: StateStore, window: Window
) -> RunSummary:
    summary = RunSummary()
    events = {
        event["id"]: event
        for event in stripe_gateway.iter_events(
            created_gte=window.read_from, created_lt=window.end, types=PAYMENT_EVENT_TYPES
        )
    }
    # Webhook deliveries of the same window are hints: an event the list did not return yet
    # (index lag) is handled now. The polled copy wins; the PaymentIntent is re-read either way.
    with store.begin() as tx:
        hinted = tx.inbox_events(WEBHOOK_SOURCE_STRIPE, window.read_from, window.end)
    for event in hinted:
        if event["type"] in PAYMENT_EVENT_TYPES:
            events.setdefault(event["id"], event)
    summary.read = len(events)
    with store.begin() as tx:
        done = tx.processed_event_ids(list(events))
    # One pass per PaymentIntent: its current state answers all of its events at once.
    by_payment_intent: dict[str | None, list[dict[str, Any]]] = {}
    unreadable: list[dict[str, Any]] = []
    for event in sorted(events.values(), key=lambda e: e["created"]):
        if event["id"] in done:
            continue
        try:
            pi_id = _payment_intent_id(event, stripe_gateway)
        except RETRYABLE_ERRORS as exc:
            if classify(exc) is not ErrorKind.FINAL:
                summary.fail(f"event {event['id']}", exc, log)
                continue
            log.warning("event %s: its charge cannot be read (%s); not ours to apply",
                        event["id"], exc)  # fmt: skip
            unreadable.append(event)
            continue
        by_payment_intent.setdefault(pi_id, []).append(event)
    # Charges made without a PaymentIntent are not ours; remember their events as seen.
    unrelated = by_payment_intent.pop(None, [])
    if unrelated or unreadable:
        with store.begin() as tx:
            for event in unrelated:
                _mark_processed(tx, event, "not_ours")
            for event in unreadable:
                _mark_processed(tx, event, "unreadable")
    summary.skipped += len(unrelated) + len(unreadable) + len(done & set(events))
    run_each(
        by_payment_intent.items(),
        lambda item: _apply_payment_intent(
            item[0], item[1], stripe_gateway, ordercloud, store, summary
        ),
        lambda item: f"payment intent {item[0]}",
        summary,
        on_refused=lambda item, exc: _payment_refused(item[0], item[1], exc, store, summary),
    )
    return summary


def _payment_refused(
    payment_intent_id: str,
    events: list[dict[str, Any]],
    error: BaseException,
    store: StateStore,
    summary: RunSummary,
) -> None:
    """Applying a PaymentIntent was refused for good (say, an order id that cannot be an
    OrderCloud id, or an xp OrderCloud will not take): a dead letter, and its events are done."""
    quarantine_refusal(
        store,
        summary,
        error,
        source=SOURCE_PAYMENTS,
        key=payment_intent_id,
        record={"payment_intent": payment_intent_id, "events": [e["id"] for e in events]},
    )
    with store.begin() as tx:
        for event in events:
            _mark_processed(tx, event, "quarantined")


def _apply_listed_payments(
    stripe_gateway: StripeGateway, ordercloud: OrderCloudClient, store: StateStore, window: Window
) -> RunSummary:
    """A backfill older than Stripe's event retention: the window's PaymentIntents and charges."""
    summary = RunSummary()
    created = {"gte": int(window.read_from.timestamp()), "lt": int(window.end.timestamp())}
    ids = {pi["id"] for pi in stripe_gateway.iter_list("payment_intents", {"created": created})}
    # Refunds, disputes and fraud warnings of the window may be about older payments.
    for resource in ("charges", "refunds", "disputes", "radar.early_fraud_warnings"):
        ids |= {
            obj["payment_intent"]
            for obj in stripe_gateway.iter_list(resource, {"created": created})
            if obj.get("payment_intent")
        }
    summary.read = len(ids)
    run_each(
        sorted(ids),
        lambda pi_id: _apply_payment_intent(
            pi_id, [], stripe_gateway, ordercloud, store, summary, look_everywhere=True
        ),
        lambda pi_id: f"payment intent {pi_id}",
        summary,
        on_refused=lambda pi_id, exc: _payment_refused(pi_id, [], exc, store, summary),
    )
    return summary


def _payment_intent_id(event: dict[str, Any], stripe_gateway: StripeGateway) -> str | None:
    """The PaymentIntent a payment, charge, refund, dispute or fraud-warning event is about."""
    obj = event["data"]["object"]
    if obj.get("object") == "payment_intent":
        return obj["id"]
    if obj.get("payment_intent"):
        return obj["payment_intent"]
    charge = obj["id"] if obj.get("object") == "charge" else obj.get("charge")
    if isinstance(charge, dict):
        return charge.get("payment_intent")
    return stripe_gateway.retrieve_charge(charge).get("payment_intent") if charge else None


def apply_payment_intent(
    payment_intent_id: str,
    stripe_gateway: StripeGateway,
    ordercloud: OrderCloudClient,
    store: StateStore,
) -> str:
    """Bring one order in step with its PaymentIntent's current state; returns the outcome.

    Public for reconciliation's self-healing and dead-letter replays: the same path as events.
    """
    summary = RunSummary()
    _apply_payment_intent(
        payment_intent_id, [], stripe_gateway, ordercloud, store, summary, look_everywhere=True
    )
    if summary.created:
        return "paid"
    if summary.quarantined:
        return "quarantined"
    return "updated" if summary.updated else "no_change"


def _apply_payment_intent(
    payment_intent_id: str,
    events: list[dict[str, Any]],
    stripe_gateway: StripeGateway,
    ordercloud: OrderCloudClient,
    store: StateStore,
    summary: RunSummary,
    *,
    look_everywhere: bool = False,
) -> None:
    # Re-read the object: events may be stale, duplicated or out of order.
    payment_intent = stripe_gateway.retrieve_payment_intent(
        payment_intent_id, expand=["latest_charge"]
    )
    mapping = load_mapping(PAYMENT_MAPPING)
    result = mapping.apply(payment_intent)
    if result.outcome == "skip":
        outcome = "not_ours"
    elif result.outcome == "reject":
        quarantine(
            store,
            summary,
            source=SOURCE_PAYMENTS,
            key=payment_intent_id,
            record=payment_intent,
            rule=result.rule,
            reason=result.reason,
        )
        outcome = "quarantined"
    else:
        # Without events (backfills, replays) every kind of follow-up is checked.
        kinds = {_event_kind(e["type"]) for e in events}
        if look_everywhere:
            kinds |= {"refund", "dispute", "fraud"}
        outcome = _move_order_forward(
            payment_intent,
            result.payload,
            kinds,
            mapping,
            stripe_gateway,
            ordercloud,
            store,
            summary,
        )

    with store.begin() as tx:
        for event in events:
            _mark_processed(tx, event, outcome)
    if outcome == "paid":
        summary.count(created=1)
    elif outcome in {"no_change", "not_ours"}:
        summary.count(skipped=1)
    elif outcome != "quarantined":
        summary.count(updated=1)


def _event_kind(event_type: str) -> str:
    if "refund" in event_type:
        return "refund"
    if "dispute" in event_type:
        return "dispute"
    if "fraud" in event_type:
        return "fraud"
    return "payment"


def _mark_processed(tx, event: dict[str, Any], outcome: str) -> None:
    tx.mark_event_processed(
        event["id"],
        source=SOURCE_STRIPE_EVENTS,
        event_type=event["type"],
        event_created=datetime.fromtimestamp(event["created"], UTC),
        outcome=outcome,
    )


def _own_link(
    payment_intent: dict[str, Any],
    order_id: str,
    ordercloud: OrderCloudClient,
    store: StateStore,
    summary: RunSummary,
) -> OrderLink | str:
    """The order's ledger link if ``payment_intent`` is the order's own PaymentIntent; else
    the outcome: ``quarantined`` (dead-lettered for a person, once per PaymentIntent) or
    ``not_ours`` (it names an order the backend does not have).

    Its own: the one the ledger links to the order; with no link yet, one that carries this
    installation's stamp for the order (made by us, then the link was lost), which is adopted.
    Anything else (a storefront's, a Dashboard user's, another app's or another installation's
    PaymentIntent naming the order) leaves the order as it is.
    """
    with store.begin() as tx:
        link = tx.get_order_link(BACKEND, order_id)
        instance_id = tx.instance_id()
    if link is not None and link.payment_intent_id == payment_intent["id"]:
        return link
    if link is None and made_by_us(payment_intent, instance_id, BACKEND, order_id):
        with store.begin() as tx:
            return tx.link_order(
                backend=BACKEND,
                order_id=order_id,
                payment_intent_id=payment_intent["id"],
                amount_minor=payment_intent["amount"],
                currency=payment_intent["currency"],
                stripe_customer_id=payment_intent.get("customer"),
            )
    try:
        order = ordercloud.get_order(order_id)
    except OrderCloudNotFound:
        log.info("%s names order %s, which OrderCloud does not have: not ours",
                 payment_intent["id"], order_id)  # fmt: skip
        return "not_ours"
    ours = link.payment_intent_id if link is not None else None
    whose = f"its PaymentIntent is {ours}" if ours else "no PaymentIntent of ours is linked to it"
    _hold_for_a_person(
        payment_intent,
        order,
        "payment.not_the_orders_payment_intent",
        f"{payment_intent['id']} ({_pi_money(payment_intent)}, {payment_intent['status']}) "
        f"names order {order_id} ({_order_money(order)}) but is not the order's own "
        f"PaymentIntent ({whose}); the order was left as it is",
        store,
        summary,
        linked_payment_intent=ours,
    )
    return "quarantined"


def _hold_for_a_person(
    payment_intent: dict[str, Any],
    order: dict[str, Any],
    rule: str,
    reason: str,
    store: StateStore,
    summary: RunSummary,
    **details: Any,
) -> None:
    """A payment that must not move the order: a dead letter with the order, the PaymentIntent
    and the difference, in the dead-letter view and the day's reconciliation."""
    received = payment_intent.get("amount_received") or 0
    currency = payment_intent["currency"]
    total = _order_total_minor(order)
    difference = None
    if total is not None and (order.get("Currency") or "").lower() == currency:
        difference = str(from_minor_units(received - total, currency))
    quarantine(
        store,
        summary,
        source=SOURCE_PAYMENTS,
        key=payment_intent["id"],
        record={
            "order": {k: order.get(k) for k in ("ID", "Status", "Total", "Currency", "xp")},
            "payment_intent": {
                k: payment_intent.get(k)
                for k in ("id", "status", "amount", "amount_received", "currency", "metadata")
            },
            "difference": difference,
            **details,
        },
        rule=rule,
        reason=reason,
    )


def _order_total_minor(order: dict[str, Any]) -> int | None:
    try:
        return to_minor_units(order.get("Total"), order.get("Currency") or "")
    except (MoneyError, TypeError, ValueError):
        return None


def _order_money(order: dict[str, Any]) -> str:
    return f"{order.get('Total')} {(order.get('Currency') or '?').upper()}"


def _pi_money(payment_intent: dict[str, Any]) -> str:
    currency = payment_intent["currency"]
    amount = payment_intent.get("amount_received") or payment_intent["amount"]
    return f"{from_minor_units(amount, currency)} {currency.upper()}"


def _pays_the_total(
    payment_intent: dict[str, Any],
    order_id: str,
    ordercloud: OrderCloudClient,
    store: StateStore,
    summary: RunSummary,
) -> bool:
    """Whether what Stripe received is exactly the order's total, in its currency, as the order
    stands now; if not, the PaymentIntent is held for a person and the order is not paid."""
    order = ordercloud.get_order(order_id)
    total = _order_total_minor(order)
    currency = (order.get("Currency") or "").lower()
    received = payment_intent.get("amount_received")
    if total is not None and (received, payment_intent["currency"]) == (total, currency):
        return True
    _hold_for_a_person(
        payment_intent,
        order,
        "payment.amount_mismatch",
        f"{payment_intent['id']} received {_pi_money(payment_intent)} but order {order_id} "
        f"totals {_order_money(order)}; the order was not marked paid (refund or collect the "
        "difference by hand, then replay)",
        store,
        summary,
    )
    return False


def _move_order_forward(
    payment_intent: dict[str, Any],
    payload: dict[str, Any],
    kinds: set[str],
    mapping: Mapping,
    stripe_gateway: StripeGateway,
    ordercloud: OrderCloudClient,
    store: StateStore,
    summary: RunSummary,
) -> str:
    order_id = payload["order_id"]
    link = _own_link(payment_intent, order_id, ordercloud, store, summary)
    if isinstance(link, str):
        return link
    state = _ledger_state(payment_intent)
    moves = (
        state is not None
        and state != link.state
        and ORDER_STATE_RANK[state] >= ORDER_STATE_RANK[link.state]
    )
    if state is not None and not moves and state != link.state:
        log.info("order %s stays %s (Stripe says %s, an earlier state)", order_id, link.state,
                 state)  # fmt: skip
    newly_paid = moves and state in PAID_STATES and link.state not in PAID_STATES
    if newly_paid and not _pays_the_total(payment_intent, order_id, ordercloud, store, summary):
        return "quarantined"

    outcome = "no_change"
    xp: dict[str, Any] = {}
    if moves:
        if newly_paid:
            # Each write is idempotent, so a crash between them is finished by the next run.
            ordercloud.create_payment(order_id, payload["payment"])
            ordercloud.create_payment_transaction(
                order_id, payload["payment"]["ID"], payload["transaction"]
            )
        xp.update(payload["order_patch"]["xp"])
        outcome = state
    charge = payment_intent.get("latest_charge")
    if isinstance(charge, dict) and (state in PAID_STATES or link.state in PAID_STATES):
        if "refund" in kinds or charge.get("amount_refunded"):
            xp.update(
                after_payment.record_refunds(
                    order_id, payment_intent, mapping, stripe_gateway, ordercloud
                )
            )
        if "dispute" in kinds or charge.get("disputed"):
            xp.update(after_payment.dispute_xp(payment_intent, mapping, stripe_gateway))
        risky = (charge.get("outcome") or {}).get("risk_level") in after_payment.RISKY_LEVELS
        if "fraud" in kinds or risky:
            review = after_payment.fraud_review(payment_intent, stripe_gateway)
            if review is not None:
                xp["FraudReview"] = review
                if load_mapping(after_payment.REFUND_MAPPING).settings.get(
                    "auto_refund_actionable_fraud_warnings", False
                ):
                    after_payment.refund_actionable_fraud_warnings(
                        payment_intent, review, stripe_gateway
                    )
        if xp and outcome == "no_change":
            outcome = "updated"
    if xp:
        ordercloud.patch_order(order_id, {"xp": xp})

    if moves:
        with store.begin() as tx:
            tx.advance_order_state(
                BACKEND,
                order_id,
                state,
                latest_charge_id=charge["id"] if isinstance(charge, dict) else None,
            )
            if newly_paid:
                tx.enqueue(
                    ERP_TOPIC, f"{BACKEND}:{order_id}", _erp_message(order_id, payment_intent)
                )
    return outcome


def _ledger_state(payment_intent: dict[str, Any]) -> str | None:
    status = payment_intent["status"]
    if status == "succeeded":
        charge = payment_intent.get("latest_charge")
        if isinstance(charge, dict) and charge.get("refunded"):
            return "refunded"
        if isinstance(charge, dict) and charge.get("amount_refunded"):
            return "partially_refunded"
        return "paid"
    if status == "requires_capture":
        return "authorized"
    if status == "canceled":
        return "canceled"
    if status == "requires_action":
        return "requires_action"
    if status == "requires_payment_method" and payment_intent.get("last_payment_error"):
        return "payment_failed"
    return None


def _erp_message(order_id: str, payment_intent: dict[str, Any]) -> dict[str, Any]:
    charge = payment_intent["latest_charge"]
    amount = from_minor_units(payment_intent["amount_received"], payment_intent["currency"])
    return {
        "backend": BACKEND,
        "order_id": order_id,
        "payment_intent_id": payment_intent["id"],
        "charge_id": charge["id"] if isinstance(charge, dict) else charge,
        "amount": str(amount),
        "currency": payment_intent["currency"].upper(),
    }
