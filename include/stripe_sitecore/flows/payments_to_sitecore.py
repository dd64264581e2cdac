"""Stripe payments move Sitecore orders forward (DAG ``stripe_events_to_sitecore``).

For each PaymentIntent the window's events (polled, plus the webhook inbox) are about:

1. **gather**: re-read everything Stripe knows about it (the PaymentIntent with its charge, the
   charge's refunds, disputes and early fraud warnings) and, when needed, the order;
2. **plan**: check it is the order's own PaymentIntent for exactly its total, then let the
   backend's payment mapping turn the snapshot into one Sitecore update (payment, refund
   records, order annotations) and the ledger's next state;
3. **apply**: hand that update to the Sitecore backend (the one place this flow writes there);
4. **commit**: move the ledger forward and, for a new payment, queue the ERP message, in one
   state-database transaction.

Events may be stale, duplicated or out of order: the PaymentIntent is re-read, the ledger only
moves forward, every Sitecore write is idempotent. Windows older than Stripe's event retention
read the list endpoints instead.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stripe_sitecore import money
from stripe_sitecore.backends.base import SitecoreBackend, SitecoreNotFound
from stripe_sitecore.clients.stripe_gateway import StripeGateway
from stripe_sitecore.errors import API_ERRORS, ErrorKind, classify
from stripe_sitecore.flows import refunds
from stripe_sitecore.flows.common import (
    RunSummary,
    Window,
    quarantine,
    quarantine_refusal,
    run_each,
    validated,
)
from stripe_sitecore.mapping import Mapping, load_mapping
from stripe_sitecore.money import from_minor_units
from stripe_sitecore.provenance import made_by_us
from stripe_sitecore.store.state import (
    ERP_CHANGES_TOPIC,
    ERP_TOPIC,
    ORDER_STATE_RANK,
    PAID_STATES,
    OrderLink,
    StateStore,
)
from stripe_sitecore.webhooks.events import SOURCE_STRIPE as WEBHOOK_SOURCE_STRIPE

log = logging.getLogger(__name__)

SOURCE_PAYMENTS = "stripe.payment_intents"
SOURCE_STRIPE_EVENTS = "stripe.events"

# Stripe lists trail `created`: re-read this much before the interval (ids de-duplicate).
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
TERMINAL_REFUND_STATUSES = frozenset({"succeeded", "failed", "canceled"})
RISKY_LEVELS = frozenset({"elevated", "highest"})
RISKY_OUTCOMES = frozenset({"manual_review", "blocked"})


def apply_stripe_events(
    stripe_gateway: StripeGateway,
    sitecore: SitecoreBackend,
    store: StateStore,
    window: Window,
    *,
    now: datetime | None = None,
) -> RunSummary:
    """Move orders forward from the window's payment events (list endpoints past retention)."""
    now = now or datetime.now(UTC)
    run = _PaymentsRun(stripe_gateway, sitecore, store)
    if window.end < now - EVENT_RETENTION:
        run.run(_listed_payment_intents(stripe_gateway, run.summary, window), look_everywhere=True)
    else:
        run.run(_events_by_payment_intent(stripe_gateway, store, run.summary, window))
        with store.begin() as tx:
            forgotten = tx.forget_events_before(window.end - EVENT_IDS_KEPT)
        if any(forgotten.values()):
            log.info("forgot event ids older than %s: %s", EVENT_IDS_KEPT, forgotten)
    run.summary.log(log, f"stripe payments {window.read_from:%Y-%m-%dT%H:%M}..{window.end:%H:%M}")
    return run.summary


def apply_payment_intent(
    payment_intent_id: str,
    stripe_gateway: StripeGateway,
    sitecore: SitecoreBackend,
    store: StateStore,
) -> str:
    """Bring one order in step with its PaymentIntent's current state; returns the outcome.

    Public for reconciliation's self-healing and dead-letter replays: the same path as events.
    API errors are raised, not counted.
    """
    run = _PaymentsRun(stripe_gateway, sitecore, store, raise_errors=True)
    run.run({payment_intent_id: []}, look_everywhere=True)
    outcome = run.outcomes.get(payment_intent_id, "no_change")
    if outcome in {"paid", "quarantined"}:
        return outcome
    return "no_change" if outcome in {"no_change", "not_ours"} else "updated"


# --- which PaymentIntents -------------------------------------------------------------------


def _events_by_payment_intent(
    stripe_gateway: StripeGateway, store: StateStore, summary: RunSummary, window: Window
) -> dict[str, list[dict[str, Any]]]:
    """The window's unprocessed payment events, polled and from the webhook inbox, by the
    PaymentIntent they are about. Events that are about none are recorded as seen."""
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
    return _unprocessed_by_payment_intent(events, stripe_gateway, store, summary)


def apply_inbox_events(
    events: list[dict[str, Any]],
    stripe_gateway: StripeGateway,
    sitecore: SitecoreBackend,
    store: StateStore,
) -> RunSummary:
    """Apply the given webhook deliveries (the real-time drain, ``stripe_sitecore.realtime``):
    the same path as a window's events, without polling. Events of other types are ignored;
    processed ones are skipped; each PaymentIntent is re-read from Stripe."""
    run = _PaymentsRun(stripe_gateway, sitecore, store)
    by_id = {e["id"]: e for e in events if e.get("type") in PAYMENT_EVENT_TYPES}
    run.run(_unprocessed_by_payment_intent(by_id, stripe_gateway, store, run.summary))
    return run.summary


def _unprocessed_by_payment_intent(
    events: dict[str, dict[str, Any]],
    stripe_gateway: StripeGateway,
    store: StateStore,
    summary: RunSummary,
) -> dict[str, list[dict[str, Any]]]:
    summary.read = len(events)
    with store.begin() as tx:
        done = tx.processed_event_ids(list(events))
    by_payment_intent: dict[str, list[dict[str, Any]]] = {}
    seen: list[tuple[dict[str, Any], str]] = []
    for event in sorted(events.values(), key=lambda e: e["created"]):
        if event["id"] in done:
            continue
        try:
            pi_id = _payment_intent_id(event, stripe_gateway)
        except API_ERRORS as exc:
            if classify(exc) is not ErrorKind.FINAL:
                summary.fail(f"event {event['id']}", exc, log)
                continue
            log.warning("event %s: its charge cannot be read (%s); not ours to apply",
                        event["id"], exc)  # fmt: skip
            seen.append((event, "unreadable"))
            continue
        if pi_id is None:
            # A charge made without a PaymentIntent is not ours.
            seen.append((event, "not_ours"))
        else:
            by_payment_intent.setdefault(pi_id, []).append(event)
    if seen:
        with store.begin() as tx:
            for event, outcome in seen:
                _mark_processed(tx, event, outcome)
    summary.count(skipped=len(seen) + len(done & set(events)))
    return by_payment_intent


def _listed_payment_intents(
    stripe_gateway: StripeGateway, summary: RunSummary, window: Window
) -> dict[str, list[dict[str, Any]]]:
    """A backfill older than Stripe's event retention: the window's PaymentIntents, and those
    the window's charges, refunds, disputes and fraud warnings are about."""
    created = {"gte": int(window.read_from.timestamp()), "lt": int(window.end.timestamp())}
    ids = {pi["id"] for pi in stripe_gateway.iter_list("payment_intents", {"created": created})}
    for resource in ("charges", "refunds", "disputes", "radar.early_fraud_warnings"):
        ids |= {
            obj["payment_intent"]
            for obj in stripe_gateway.iter_list(resource, {"created": created})
            if obj.get("payment_intent")
        }
    summary.read = len(ids)
    return {pi_id: [] for pi_id in sorted(ids)}


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


def _mark_processed(tx, event: dict[str, Any], outcome: str) -> None:
    tx.mark_event_processed(
        event["id"],
        source=SOURCE_STRIPE_EVENTS,
        event_type=event["type"],
        event_created=datetime.fromtimestamp(event["created"], UTC),
        outcome=outcome,
    )


def _event_kind(event_type: str) -> str:
    if "refund" in event_type:
        return "refund"
    if "dispute" in event_type:
        return "dispute"
    if "fraud" in event_type:
        return "fraud"
    return "payment"


# --- one PaymentIntent: gather, plan, apply, commit -----------------------------------------


@dataclass
class _Plan:
    """What one PaymentIntent means for its order."""

    payment_intent_id: str
    events: list[dict[str, Any]]
    outcome: str = "no_change"
    order_id: str | None = None
    payment_intent: dict[str, Any] | None = None
    link: OrderLink | None = None
    state: str | None = None  # the ledger state to move to, if it moves
    payment: dict[str, Any] | None = None  # a newly captured payment to record
    refund_records: list[dict[str, Any]] = field(default_factory=list)
    order_patch: dict[str, Any] = field(default_factory=dict)
    fraud_warnings: list[dict[str, Any]] = field(default_factory=list)
    auto_refund: bool = False
    # What the ERP must hear once it has the order: succeeded refunds, a lost dispute.
    refunds_done: list[dict[str, Any]] = field(default_factory=list)
    lost_dispute: dict[str, Any] | None = None


class _PaymentsRun:
    def __init__(
        self,
        stripe_gateway: StripeGateway,
        sitecore: SitecoreBackend,
        store: StateStore,
        *,
        raise_errors: bool = False,
    ):
        self.stripe = stripe_gateway
        self.sitecore = sitecore
        self.store = store
        self.raise_errors = raise_errors
        self.summary = RunSummary()
        self.mapping: Mapping = load_mapping(sitecore.mappings.payment_to_sitecore)
        _, refund_settings = refunds.refund_settings(sitecore)
        self.auto_refund = refund_settings.auto_refund_actionable_fraud_warnings
        self.outcomes: dict[str, str] = {}
        with store.begin() as tx:
            self.instance_id = tx.instance_id()

    def run(self, by_payment_intent: dict[str, list[dict[str, Any]]], *, look_everywhere=False):
        plans: dict[str, _Plan] = {}

        def gather_and_plan(item: tuple[str, list[dict[str, Any]]]) -> None:
            pi_id, events = item
            plans[pi_id] = self.plan(pi_id, events, look_everywhere)

        self._each(list(by_payment_intent.items()), gather_and_plan, lambda item: item[0])
        # Money recorded in Sitecore is checked like every other outbound payload.
        paying = {p.payment_intent_id: p.payment for p in plans.values() if p.payment}
        records = {pi_id: plans[pi_id].payment_intent for pi_id in paying}
        passed = set(
            validated(
                self.mapping.payload_type, paying, records, self.store, self.summary,
                SOURCE_PAYMENTS,
            )
        )  # fmt: skip
        for pi_id in set(paying) - passed:
            plans[pi_id].outcome = "quarantined"
        self._each(list(plans.values()), self.apply_and_commit, lambda p: p.payment_intent_id)

    def _each(self, items, work, key) -> None:
        if self.raise_errors:
            for item in items:
                work(item)
            return
        run_each(
            items,
            work,
            lambda item: f"payment intent {key(item)}",
            self.summary,
            on_refused=lambda item, exc: self.refused(key(item), item, exc),
        )

    def refused(self, pi_id: str, item: Any, error: BaseException) -> None:
        """The PaymentIntent's update was refused for good (say, an order id that cannot be one
        of the backend's, or an annotation the backend will not take): a dead letter, and its
        events are done."""
        events = item.events if isinstance(item, _Plan) else item[1]
        quarantine_refusal(
            self.store,
            self.summary,
            error,
            source=SOURCE_PAYMENTS,
            key=pi_id,
            record={"payment_intent": pi_id, "events": [e["id"] for e in events]},
        )
        with self.store.begin() as tx:
            for event in events:
                _mark_processed(tx, event, "quarantined")
        self.outcomes[pi_id] = "quarantined"

    # --- gather and plan -----------------------------------------------------------------
    def plan(self, pi_id: str, events: list[dict[str, Any]], look_everywhere: bool) -> _Plan:
        plan = _Plan(pi_id, events)
        payment_intent = self.stripe.retrieve_payment_intent(pi_id, expand=["latest_charge"])
        plan.payment_intent = payment_intent
        base = self.mapping.apply(payment_intent)
        if base.outcome == "skip":
            plan.outcome = "not_ours"
            return plan
        if base.outcome == "reject":
            quarantine(self.store, self.summary, source=SOURCE_PAYMENTS, key=pi_id,
                       record=payment_intent, rule=base.rule, reason=base.reason)  # fmt: skip
            plan.outcome = "quarantined"
            return plan
        order_id = plan.order_id = base.payload["order_id"]
        link = self.own_link(payment_intent, order_id)
        if isinstance(link, str):
            plan.outcome = link
            return plan
        plan.link = link
        state = _ledger_state(payment_intent)
        moves = (
            state is not None
            and state != link.state
            and ORDER_STATE_RANK[state] >= ORDER_STATE_RANK[link.state]
        )
        if state is not None and not moves and state != link.state:
            log.info("order %s stays %s (Stripe says %s, an earlier state)", order_id,
                     link.state, state)  # fmt: skip
        newly_paid = moves and state in PAID_STATES and link.state not in PAID_STATES
        if newly_paid and not self.pays_the_total(payment_intent, order_id):
            plan.outcome = "quarantined"
            return plan
        if moves:
            plan.state = state
            plan.outcome = state
            _merge(plan.order_patch, base.payload["order_patch"])
            if newly_paid:
                plan.payment = base.payload

        # What else Stripe knows about the payment, once there is one.
        charge = payment_intent.get("latest_charge")
        if isinstance(charge, dict) and (state in PAID_STATES or link.state in PAID_STATES):
            kinds = {_event_kind(e["type"]) for e in events}
            if look_everywhere:
                kinds |= {"refund", "dispute", "fraud"}
            for extra in self.follow_ups(payment_intent, charge, kinds):
                result = self.mapping.apply({**payment_intent, **extra})
                if result.outcome != "map":
                    continue
                if "refund_transaction" in result.payload:
                    plan.refund_records.append(result.payload)
                    if extra["refund"]["status"] == "succeeded":
                        plan.refunds_done.append(extra["refund"])
                if "dispute" in extra and extra["dispute"].get("status") == "lost":
                    plan.lost_dispute = extra["dispute"]
                _merge(plan.order_patch, _added(result.payload["order_patch"], base.payload))
                if "fraud_review" in extra:
                    plan.fraud_warnings = extra["fraud_review"]["warnings"]
            plan.auto_refund = self.auto_refund and any(
                w.get("actionable") for w in plan.fraud_warnings
            )
        if plan.outcome == "no_change" and (plan.order_patch or plan.refund_records):
            plan.outcome = "updated"
        return plan

    def follow_ups(self, payment_intent, charge, kinds) -> list[dict[str, Any]]:
        """The refunds, newest dispute and fraud review of the charge, one record each, as the
        payment mapping reads them next to the PaymentIntent."""
        found: list[dict[str, Any]] = []
        if "refund" in kinds or charge.get("amount_refunded"):
            for refund in self.stripe.iter_list("refunds", {"charge": charge["id"]}):
                # A pending refund is written when Stripe reports how it ended.
                if refund["status"] in TERMINAL_REFUND_STATUSES:
                    found.append({"refund": refund})
        if "dispute" in kinds or charge.get("disputed"):
            disputes = list(self.stripe.iter_list("disputes", {"charge": charge["id"]}))
            if disputes:
                found.append({"dispute": max(disputes, key=lambda d: d["created"])})
        outcome = charge.get("outcome") or {}
        risky = outcome.get("risk_level") in RISKY_LEVELS
        if "fraud" in kinds or risky:
            warnings = sorted(
                self.stripe.iter_list("radar.early_fraud_warnings", {"charge": charge["id"]}),
                key=lambda w: w["created"],
            )
            if warnings or risky or outcome.get("type") in RISKY_OUTCOMES:
                found.append({"fraud_review": {"warnings": warnings}})
        return found

    def own_link(self, payment_intent: dict[str, Any], order_id: str) -> OrderLink | str:
        """The order's ledger link if ``payment_intent`` is the order's own PaymentIntent; else
        the outcome: ``quarantined`` (held for a person, once per PaymentIntent) or ``not_ours``
        (it names an order the backend does not have).

        Its own: the one the ledger links to the order; with no link yet, one that carries this
        installation's stamp for the order (made by us, then the link was lost), which is
        adopted. Anything else (a storefront's, a Dashboard user's, another app's or another
        installation's PaymentIntent naming the order) leaves the order as it is.
        """
        backend = self.sitecore.id
        with self.store.begin() as tx:
            link = tx.get_order_link(backend, order_id)
        if link is not None and link.payment_intent_id == payment_intent["id"]:
            return link
        if link is None and made_by_us(payment_intent, self.instance_id, backend, order_id):
            with self.store.begin() as tx:
                return tx.link_order(
                    backend=backend,
                    order_id=order_id,
                    payment_intent_id=payment_intent["id"],
                    amount_minor=payment_intent["amount"],
                    currency=payment_intent["currency"],
                    stripe_customer_id=payment_intent.get("customer"),
                )
        try:
            order = self.sitecore.get_order(order_id)
        except SitecoreNotFound:
            log.info("%s names order %s, which %s does not have: not ours",
                     payment_intent["id"], order_id, self.sitecore.title)  # fmt: skip
            return "not_ours"
        ours = link.payment_intent_id if link is not None else None
        whose = f"its PaymentIntent is {ours}" if ours else "no PaymentIntent of ours is linked"
        self.hold(
            payment_intent,
            order,
            "payment.not_the_orders_payment_intent",
            f"{payment_intent['id']} ({_pi_money(payment_intent)}, {payment_intent['status']}) "
            f"names order {order_id} ({self.sitecore.order_total(order).shown}) but is not the "
            f"order's own PaymentIntent ({whose}); the order was left as it is",
            linked_payment_intent=ours,
        )
        return "quarantined"

    def pays_the_total(self, payment_intent: dict[str, Any], order_id: str) -> bool:
        """Whether what Stripe received is exactly the order's total, in its currency, as the
        order stands now; if not, the PaymentIntent is held for a person."""
        order = self.sitecore.get_order(order_id)
        total = self.sitecore.order_total(order)
        received = payment_intent.get("amount_received")
        if total.minor is not None and (received, payment_intent["currency"]) == (
            total.minor,
            total.currency,
        ):
            return True
        self.hold(
            payment_intent,
            order,
            "payment.amount_mismatch",
            f"{payment_intent['id']} received {_pi_money(payment_intent)} but order {order_id} "
            f"totals {total.shown}; the order was not marked paid (refund or collect the "
            "difference by hand, then replay)",
        )
        return False

    def hold(self, payment_intent, order, rule: str, reason: str, **details: Any) -> None:
        """A payment that must not move the order: a dead letter with the order, the
        PaymentIntent and the difference, in the dead-letter view and the day's
        reconciliation."""
        currency = payment_intent["currency"]
        total = self.sitecore.order_total(order)
        difference = None
        if total.minor is not None and total.currency == currency:
            received = payment_intent.get("amount_received") or 0
            difference = str(from_minor_units(received - total.minor, currency))
        quarantine(
            self.store,
            self.summary,
            source=SOURCE_PAYMENTS,
            key=payment_intent["id"],
            record={
                "order": order,
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

    # --- apply and commit ----------------------------------------------------------------
    def apply_and_commit(self, plan: _Plan) -> None:
        order_id = plan.order_id
        if order_id is not None and plan.link is not None and plan.outcome != "quarantined":
            if plan.payment is not None:
                self.sitecore.record_payment(order_id, plan.payment)
            for record in plan.refund_records:
                if self.sitecore.record_refund(order_id, record):
                    log.info("order %s: refund %s recorded", order_id,
                             record["refund_transaction"].get("ID"))  # fmt: skip
            if plan.order_patch:
                self.sitecore.annotate(order_id, plan.order_patch)
            if plan.auto_refund:
                refunds.refund_actionable_fraud_warnings(
                    plan.payment_intent, plan.fraud_warnings, self.stripe
                )
            if plan.state is not None:
                charge = plan.payment_intent.get("latest_charge")
                with self.store.begin() as tx:
                    tx.advance_order_state(
                        self.sitecore.id,
                        order_id,
                        plan.state,
                        latest_charge_id=charge["id"] if isinstance(charge, dict) else None,
                    )
                    if plan.payment is not None:
                        tx.enqueue(
                            ERP_TOPIC,
                            f"{self.sitecore.id}:{order_id}",
                            _erp_message(self.sitecore.id, order_id, plan.payment_intent),
                        )
            if plan.refunds_done or plan.lost_dispute or plan.state == "refunded":
                with self.store.begin() as tx:
                    for key, change in _erp_changes(self.sitecore.id, order_id, plan):
                        tx.enqueue(ERP_CHANGES_TOPIC, key, change)
        self.finish(plan)

    def finish(self, plan: _Plan) -> None:
        with self.store.begin() as tx:
            for event in plan.events:
                _mark_processed(tx, event, plan.outcome)
        self.outcomes[plan.payment_intent_id] = plan.outcome
        if plan.outcome == "quarantined":
            return  # counted when it was quarantined
        if plan.outcome == "paid":
            self.summary.count(created=1)
        elif plan.outcome in {"no_change", "not_ours"}:
            self.summary.count(skipped=1)
        else:
            self.summary.count(updated=1)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Merge ``patch`` into ``target``, objects member by member."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _added(patch: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """What ``patch`` (a follow-up's order_patch) says beyond the PaymentIntent's own one: only
    that is written for a refund, a dispute or a fraud review."""
    base_patch = base.get("order_patch") or {}

    def diff(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in new.items():
            if key not in old:
                out[key] = value
            elif isinstance(value, dict) and isinstance(old[key], dict):
                inner = diff(value, old[key])
                if inner:
                    out[key] = inner
            elif value != old[key]:
                out[key] = value
        return out

    return diff(patch, base_patch)


def _pi_money(payment_intent: dict[str, Any]) -> str:
    currency = payment_intent["currency"]
    amount = payment_intent.get("amount_received") or payment_intent["amount"]
    return f"{from_minor_units(amount, currency)} {currency.upper()}"


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


def _erp_message(backend: str, order_id: str, payment_intent: dict[str, Any]) -> dict[str, Any]:
    charge = payment_intent["latest_charge"]
    amount = from_minor_units(payment_intent["amount_received"], payment_intent["currency"])
    return {
        "backend": backend,
        "order_id": order_id,
        "payment_intent_id": payment_intent["id"],
        "charge_id": charge["id"] if isinstance(charge, dict) else charge,
        "amount": str(amount),
        "currency": payment_intent["currency"].upper(),
    }


def _erp_changes(backend: str, order_id: str, plan: _Plan) -> list[tuple[str, dict[str, Any]]]:
    """What the ERP must be told about an order after hand-off, each with its outbox key (the
    outbox keeps one row per key, so each is told once, however often Stripe says it): a
    return for every succeeded refund, a cancel once nothing is left to fulfil (refunded in
    full), a release of the reservations when a dispute is lost."""
    payment_intent = plan.payment_intent
    currency = payment_intent["currency"]
    changes = []

    def change(kind: str, source_kind: str, source_id: str, reason: str, **extra: Any):
        message = {
            "backend": backend,
            "order_id": order_id,
            "kind": kind,
            "message_id": f"{kind}-{source_id}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "source": {"system": "stripe", "kind": source_kind, "id": source_id},
            "reason": reason,
            **extra,
        }
        changes.append((f"{backend}:{order_id}:{kind}:{source_id}", message))

    for refund in plan.refunds_done:
        amount = money.format_amount(from_minor_units(refund["amount"], currency), currency)
        change(
            "return",
            "refund",
            refund["id"],
            f"Stripe refund {refund['id']} ({refund.get('reason') or 'no reason given'})",
            amount=amount,
            currency=currency.upper(),
        )
    if plan.state == "refunded":
        charge = payment_intent.get("latest_charge") or {}
        change("cancel", "refund", charge.get("id") or payment_intent["id"], "refunded in full")
    if plan.lost_dispute is not None:
        dispute = plan.lost_dispute
        change("release", "dispute", dispute["id"], f"dispute lost ({dispute.get('reason')})")
    return changes
