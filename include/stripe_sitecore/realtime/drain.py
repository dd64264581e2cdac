"""The real-time drain: every unprocessed webhook delivery, whatever asset event started the run.

Airflow merges a burst of asset events into one run (apache/airflow#56050), so the run never
looks at the event that started it: it reads every unprocessed inbox row and

1. the orders the Sitecore backend's deliveries name → ``push_orders`` (PaymentIntent created
   and written on the order, exactly as ``sitecore_orders_to_stripe`` would);
2. the Stripe payment events → ``apply_inbox_events`` (the PaymentIntent re-read, the order
   moved, the ERP message queued, exactly as ``stripe_events_to_sitecore`` would);
3. the ERP outbox → ``drain_erp_outbox``.

The flows' own idempotency makes this path and the 5-minute DAGs a no-op for each other: the
ledger links an order to one PaymentIntent, the processed-events ledger skips applied events,
ERP deliveries carry an Idempotency-Key. Deliveries the drain cannot apply for good (another
backend's, other event types, no order named) are recorded as processed so the trigger does not
fire for them again; those that hit a retryable error stay unprocessed for the next drain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from stripe_sitecore.backends.base import SitecoreBackend, SitecoreNotFound
from stripe_sitecore.clients.stripe_gateway import StripeGateway
from stripe_sitecore.errors import API_ERRORS, ErrorKind, InvalidId, classify
from stripe_sitecore.flows.common import RunSummary
from stripe_sitecore.realtime import inbox
from stripe_sitecore.store import models
from stripe_sitecore.store.state import StateStore
from stripe_sitecore.webhooks.events import SOURCE_STRIPE

log = logging.getLogger(__name__)

# The task summary lists at most this many events (XCom stays small in a burst).
LISTED = 50


@dataclass
class DrainReport:
    unprocessed: int = 0
    applied: list[dict[str, Any]] = field(default_factory=list)
    orders: RunSummary = field(default_factory=RunSummary)
    payments: RunSummary = field(default_factory=RunSummary)
    erp: RunSummary = field(default_factory=RunSummary)
    left_unprocessed: int = 0

    @property
    def failures(self) -> list[str]:
        return self.orders.failures + self.payments.failures + self.erp.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "unprocessed": self.unprocessed,
            "applied": len(self.applied),
            "events": self.applied[:LISTED],
            "events_not_listed": max(len(self.applied) - LISTED, 0),
            "orders": self.orders.as_dict(),
            "payments": self.payments.as_dict(),
            "erp": self.erp.as_dict(),
            "left_unprocessed": self.left_unprocessed,
            "failures": self.failures[:10],
        }


def drain_inbox(
    sitecore: SitecoreBackend,
    stripe_gateway: StripeGateway,
    erp,
    store: StateStore,
    *,
    now: datetime | None = None,
) -> DrainReport:
    """Apply every unprocessed delivery, then the ERP outbox; record what was seen."""
    with store.begin() as tx:
        seen_until = inbox.newest_received(tx)
        rows = inbox.unprocessed_rows(tx, now)
    report = DrainReport(unprocessed=len(rows))
    ours = sitecore.webhook_source
    order_rows = [r for r in rows if ours is not None and r.source == ours]
    stripe_rows = [r for r in rows if r.source == SOURCE_STRIPE]
    other_rows = [r for r in rows if r.source != SOURCE_STRIPE and r.source != ours]
    if order_rows:
        _orders(order_rows, sitecore, stripe_gateway, store, report)
    if stripe_rows:
        _payments(stripe_rows, sitecore, stripe_gateway, store, report)
    if other_rows:
        # Another backend's deliveries: that backend's deployment applies them, not this one.
        _mark(store, other_rows, "not_this_backend")
    if erp is not None:
        from stripe_sitecore.flows.erp import drain_erp_outbox

        report.erp = drain_erp_outbox(sitecore, stripe_gateway, erp, store)
    with store.begin() as tx:
        report.left_unprocessed = inbox.count_unprocessed(tx, now)
        inbox.set_drain_mark(
            tx,
            inbox.DrainMark(
                seen_until=seen_until, pending=report.left_unprocessed,
                drained_at=datetime.now(UTC),
            ),
        )  # fmt: skip
    log.info("real-time drain: %s", {k: v for k, v in report.as_dict().items() if k != "events"})
    for entry in report.applied[:LISTED]:
        log.info("applied %s", entry)
    return report


def _orders(rows, sitecore, stripe_gateway, store, report: DrainReport) -> None:
    from stripe_sitecore.flows.orders_to_stripe import push_orders

    by_order: dict[str, list[inbox.InboxRow]] = {}
    no_order = []
    for row in rows:
        (by_order.setdefault(row.object_id, []) if row.object_id else no_order).append(row)
    if no_order:
        _mark(store, no_order, "no_order")
    orders, final = [], {}
    for order_id in by_order:
        try:
            orders.append(sitecore.get_order(order_id))
        except SitecoreNotFound:
            final[order_id] = "order_not_found"
        except InvalidId as exc:
            log.warning("delivery names an order id that cannot be one: %s", exc)
            final[order_id] = "invalid_order_id"
        except API_ERRORS as exc:
            if classify(exc) is ErrorKind.FINAL:
                final[order_id] = "order_unreadable"
            else:
                # Left unprocessed: the next drain (with backoff) or the 5-minute run reads it.
                report.orders.fail(f"order {order_id}", exc, log)
    for order_id, outcome in final.items():
        _mark(store, by_order[order_id], outcome)
    if not orders:
        return
    summary = push_orders(orders, sitecore, stripe_gateway, store)
    report.orders.count(**{k: v for k, v in summary.as_dict().items() if k != "read"})
    report.orders.read = len(by_order)
    if summary.failed:
        report.orders.failures += summary.failures
        return  # every order of the batch is tried again: push_orders is idempotent
    read = [sitecore.order_id(order) for order in orders]
    with store.begin() as tx:
        links = {oid: tx.get_order_link(sitecore.id, oid) for oid in read}
    for order_id in read:
        link = links[order_id]
        outcome = link.state if link else "not_payable"
        _mark(store, by_order[order_id], outcome)
        for row in by_order[order_id]:
            report.applied.append({
                "event": row.event_id, "type": row.event_type, "order": order_id,
                "payment_intent": link.payment_intent_id if link else None, "outcome": outcome,
            })  # fmt: skip


def _payments(rows, sitecore, stripe_gateway, store, report: DrainReport) -> None:
    from stripe_sitecore.flows.payments_to_sitecore import PAYMENT_EVENT_TYPES, apply_inbox_events

    payment_rows = [r for r in rows if r.event_type in PAYMENT_EVENT_TYPES]
    others = [r for r in rows if r.event_type not in PAYMENT_EVENT_TYPES]
    if others:
        _mark(store, others, "type_not_applied")
    if not payment_rows:
        return
    report.payments = apply_inbox_events(
        [r.body for r in payment_rows], stripe_gateway, sitecore, store
    )
    t = models.processed_events
    with store.begin() as tx:
        outcomes = dict(
            tx.conn.execute(
                sa.select(t.c.event_id, t.c.outcome).where(
                    t.c.event_id.in_([r.event_id for r in payment_rows])
                )
            ).all()
        )
    for row in payment_rows:
        if row.event_id in outcomes:
            pi = (row.body.get("data") or {}).get("object", {})
            report.applied.append({
                "event": row.event_id, "type": row.event_type,
                "payment_intent": pi.get("id") if pi.get("object") == "payment_intent"
                else pi.get("payment_intent"),
                "outcome": outcomes[row.event_id],
            })  # fmt: skip


def _mark(store: StateStore, rows, outcome: str) -> None:
    with store.begin() as tx:
        for row in rows:
            tx.mark_event_processed(
                row.event_id,
                source=f"{row.source}.webhooks",
                event_type=row.event_type,
                event_created=row.event_created,
                outcome=outcome,
            )
