"""Sitecore orders become Stripe PaymentIntents (DAG ``sitecore_orders_to_stripe``).

Gather the window's changed orders (and those the backend's webhooks name), plan each (create a
PaymentIntent, follow a new total, cancel an unpaid one, refund what Sitecore asks, or nothing),
apply to Stripe, then commit to the ledger and write the payment state back to the order. Safe
to run any number of times over any window: creates, updates and cancels carry deterministic
idempotency keys, and the ledger links each order to its one PaymentIntent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from stripe_sitecore.backends.base import SitecoreBackend, SitecoreNotFound
from stripe_sitecore.clients.stripe_gateway import StripeGateway, idempotency_key
from stripe_sitecore.errors import API_ERRORS, InvalidId, request_digest
from stripe_sitecore.flows import refunds
from stripe_sitecore.flows.common import (
    RunSummary,
    Window,
    quarantine,
    quarantine_refusal,
    run_each,
    validated,
)
from stripe_sitecore.mapping import Mapping, MappingResult, load_mapping
from stripe_sitecore.money import from_minor_units
from stripe_sitecore.provenance import METADATA_STAMP, made_by_us, stamp
from stripe_sitecore.store.state import (
    CANCELABLE_STATES,
    PAID_STATES,
    UNPAID_STATES,
    OrderLink,
    StateStore,
)

log = logging.getLogger(__name__)

# The backends' order lists are search indexes that trail writes: re-read this much.
ORDER_LIST_OVERLAP = timedelta(minutes=10)


def sync_orders_to_stripe(
    sitecore: SitecoreBackend, stripe_gateway: StripeGateway, store: StateStore, window: Window
) -> RunSummary:
    """Push the orders changed in the window (re-reading the overlap) to Stripe."""
    orders = sitecore.changed_orders(window.read_from, window.end)
    listed = {sitecore.order_id(order) for order in orders}
    orders += _hinted_orders(sitecore, store, window, listed)
    summary = push_orders(orders, sitecore, stripe_gateway, store)
    summary.log(log, f"orders {window.read_from:%Y-%m-%dT%H:%M}..{window.end:%H:%M}")
    return summary


def _hinted_orders(
    sitecore: SitecoreBackend, store: StateStore, window: Window, listed: set[str]
) -> list[dict[str, Any]]:
    """Orders named by the window's webhook deliveries that the (lagging) list did not return
    yet, read one by one. Only a hint: ``push_orders`` decides from the order itself."""
    found = []
    for order_id in sitecore.hinted_order_ids(store, window.read_from, window.end):
        if order_id in listed:
            continue
        try:
            found.append(sitecore.get_order(order_id))
        except SitecoreNotFound:
            log.info("order %s named by a webhook does not exist (deleted, or another "
                     "direction)", order_id)  # fmt: skip
        except API_ERRORS as exc:
            # A hint must not fail the listed orders; the list brings this order in its turn.
            log.warning("order %s named by a webhook could not be read: %s", order_id, exc)
    return found


def push_orders(
    orders: list[dict[str, Any]],
    sitecore: SitecoreBackend,
    stripe_gateway: StripeGateway,
    store: StateStore,
    *,
    replay: bool = False,
) -> RunSummary:
    """Decide and do, per order: create, update or cancel its PaymentIntent, skip or quarantine.

    The one code path for scheduled runs, backfills and dead-letter replays. A create Stripe
    refused for good is not sent again with the same parameters, except by a ``replay``.
    """
    run = _OrdersRun(sitecore, stripe_gateway, store, replay=replay)
    run.gather(orders)
    run.plan()
    run.apply()
    return run.summary


@dataclass
class _OrdersRun:
    sitecore: SitecoreBackend
    stripe: StripeGateway
    store: StateStore
    replay: bool = False
    summary: RunSummary = field(default_factory=RunSummary)
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, OrderLink] = field(default_factory=dict)
    refused: dict[str, set[str]] = field(default_factory=dict)
    instance_id: str = ""
    new_orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    linked_work: list[tuple[dict[str, Any], OrderLink, MappingResult]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mapping: Mapping = load_mapping(self.sitecore.mappings.order_to_payment_intent)
        self.source = self.sitecore.orders_source

    # --- gather ----------------------------------------------------------------------------
    def gather(self, orders: list[dict[str, Any]]) -> None:
        for order in orders:
            try:
                # Ids come back to us in webhooks and metadata: one the backend could not have
                # given is refused before anything is written anywhere.
                self.sitecore.check_order_id(self.sitecore.order_id(order))
            except InvalidId as exc:
                quarantine_refusal(self.store, self.summary, exc, source=self.source,
                                   key=self.sitecore.order_id(order), record=order)  # fmt: skip
                continue
            self.by_id[self.sitecore.order_id(order)] = order
        self.summary.read = len(self.by_id) + self.summary.quarantined
        unlinked = []
        with self.store.begin() as tx:
            for order_id in self.by_id:
                link = tx.get_order_link(self.sitecore.id, order_id)
                if link is None:
                    unlinked.append(order_id)
                else:
                    self.links[order_id] = link
            self.refused = tx.refused_requests(self.source, unlinked)
            self.instance_id = tx.instance_id()

    # --- plan ------------------------------------------------------------------------------
    def plan(self) -> None:
        for order_id, order in sorted(self.by_id.items()):
            result = self.mapping.apply(order)
            if order_id in self.links:
                self.linked_work.append((order, self.links[order_id], result))
            elif result.outcome == "skip":
                log.info("order %s skipped: %s", order_id, result.reason)
                self.summary.count(skipped=1)
            elif result.outcome == "reject":
                self.hold(order, result.rule, result.reason)
            else:
                payload = result.payload
                payload.setdefault("metadata", {})[METADATA_STAMP] = stamp(
                    self.instance_id, self.sitecore.id, order_id
                )
                if request_digest(payload) in self.refused.get(order_id, ()) and not self.replay:
                    log.warning("order %s: Stripe refused this PaymentIntent before and the order "
                                "has not changed; not sending it again (replay its dead letter "
                                "after a fix)", order_id)  # fmt: skip
                    self.summary.count(skipped=1)
                    continue
                self.new_orders[order_id] = payload

    # --- apply and commit ------------------------------------------------------------------
    def apply(self) -> None:
        passed = validated(
            self.mapping.payload_type,
            self.new_orders,
            self.by_id,
            self.store,
            self.summary,
            self.source,
        )
        run_each(
            passed,
            self.create,
            lambda oid: f"order {oid}",
            self.summary,
            on_refused=lambda oid, exc: quarantine_refusal(
                self.store,
                self.summary,
                exc,
                source=self.source,
                key=oid,
                record=self.by_id[oid],
                request_digest=request_digest(self.new_orders[oid]),
            ),
        )
        run_each(
            self.linked_work,
            lambda work: self.update_linked(*work),
            lambda work: f"order {self.sitecore.order_id(work[0])}",
            self.summary,
            on_refused=lambda work, exc: quarantine_refusal(
                self.store,
                self.summary,
                exc,
                source=self.source,
                key=self.sitecore.order_id(work[0]),
                record=work[0],
            ),
        )

    def create(self, order_id: str) -> None:
        order, params = self.by_id[order_id], self.new_orders[order_id]
        customer_id = self.stripe_customer(order)
        if customer_id:
            params = {**params, "customer": customer_id}
        # The key survives task retries: same order, same submission, same PaymentIntent.
        key = idempotency_key(
            "create_payment_intent",
            f"{self.sitecore.id}:{order_id}",
            self.sitecore.order_version(order),
        )
        payment_intent = self.stripe.create_payment_intent(
            params,
            key=key,
            look_up_after=self.sitecore.submitted_at(order),
            # Past Stripe's key memory, a PaymentIntent found by metadata is ours only if
            # stamped.
            accept=lambda found: made_by_us(found, self.instance_id, self.sitecore.id, order_id),
        )
        with self.store.begin() as tx:
            tx.link_order(
                backend=self.sitecore.id,
                order_id=order_id,
                payment_intent_id=payment_intent["id"],
                amount_minor=payment_intent["amount"],
                currency=payment_intent["currency"],
                stripe_customer_id=payment_intent.get("customer"),
            )
        self.write_state(order_id, payment_intent["id"], "awaiting_payment")
        log.info("order %s -> %s (%s %s minor units)", order_id, payment_intent["id"],
                 payment_intent["amount"], payment_intent["currency"])  # fmt: skip
        self.summary.count(created=1)

    def stripe_customer(self, order: dict[str, Any]) -> str | None:
        """The shopper's linked Stripe customer, found by exact email or created; None if the
        shopper cannot be mapped (the payment goes on without a customer rather than not at
        all)."""
        from stripe_sitecore.flows.customers import CustomerNotMappable, ensure_stripe_customer

        shopper = self.sitecore.shopper(order)
        if shopper is None:
            return None
        try:
            return ensure_stripe_customer(shopper, self.stripe, self.sitecore, self.store)
        except CustomerNotMappable as exc:
            log.warning("order %s: no Stripe customer for its shopper: %s",
                        self.sitecore.order_id(order), exc)  # fmt: skip
            return None

    def write_state(self, order_id: str, payment_intent_id: str | None, state: str) -> None:
        """The one write of a payment state onto the order, shaped by the backend's mapping."""
        result = load_mapping(self.sitecore.mappings.payment_state).apply(
            {"state": state, "payment_intent_id": payment_intent_id}
        )
        if result.outcome != "map":
            raise ValueError(f"{result.rule}: {result.reason}")  # a broken shipped mapping
        self.sitecore.write_payment_state(order_id, result.payload)

    def hold(self, order: dict[str, Any], rule: str | None, reason: str | None) -> None:
        quarantine(self.store, self.summary, source=self.source,
                   key=self.sitecore.order_id(order), record=order, rule=rule,
                   reason=reason)  # fmt: skip

    def update_linked(self, order: dict[str, Any], link: OrderLink, result: MappingResult):
        """An order that already has a PaymentIntent: follow a refund request, a cancel or a
        new total, never charge."""
        order_id = self.sitecore.order_id(order)
        if link.state in PAID_STATES and refunds.refund_from_sitecore(
            order, link, self.stripe, self.sitecore, self.store, self.summary
        ):
            return
        if refunds.order_closed(order, self.sitecore):
            self.cancel_unpaid(order, link)
            return
        if result.outcome == "reject":
            self.hold(order, result.rule, result.reason)
            return
        if result.outcome == "map":
            amount, currency = result.payload["amount"], result.payload["currency"]
            if (amount, currency) != (link.amount_minor, link.currency):
                self.follow_new_total(order, link, amount, currency)
                return
        if self.sitecore.written_payment_intent(order) != link.payment_intent_id:
            # Linked but the write-back was lost (a crash between the two): finish it.
            self.write_state(order_id, link.payment_intent_id, link.state)
            self.summary.count(updated=1)
            return
        self.summary.count(skipped=1)

    def cancel_unpaid(self, order: dict[str, Any], link: OrderLink) -> None:
        """A canceled or declined order: cancel its PaymentIntent if nothing was captured (an
        authorization is released), so no PaymentIntent is left for the customer to pay."""
        order_id = self.sitecore.order_id(order)
        changed = False
        if link.state in CANCELABLE_STATES:
            current = self.stripe.retrieve_payment_intent(link.payment_intent_id)
            if current["status"] in ("succeeded", "processing"):
                # Paid meanwhile: the payment flow records it, then the refund settings apply.
                log.info("order %s is %s but %s is %s: not canceled", order_id,
                         order.get("Status"), link.payment_intent_id,
                         current["status"])  # fmt: skip
                self.summary.count(skipped=1)
                return
            if current["status"] != "canceled":
                self.stripe.cancel_payment_intent(
                    link.payment_intent_id,
                    {"cancellation_reason": "abandoned"},
                    key=idempotency_key(
                        "cancel_payment_intent", f"{self.sitecore.id}:{order_id}", 1
                    ),
                )
            with self.store.begin() as tx:
                tx.advance_order_state(self.sitecore.id, order_id, "canceled")
            log.info("order %s %s before capture: %s canceled", order_id, order.get("Status"),
                     link.payment_intent_id)  # fmt: skip
            changed = True
        elif link.state != "canceled":
            # Captured: refunds follow the refund settings, not a cancel.
            self.summary.count(skipped=1)
            return
        if not self.sitecore.shows_payment_state(order, "canceled"):
            self.write_state(order_id, link.payment_intent_id, "canceled")
            changed = True
        self.summary.count(**{"updated" if changed else "skipped": 1})

    def follow_new_total(
        self, order: dict[str, Any], link: OrderLink, amount: int, currency: str
    ) -> None:
        order_id = self.sitecore.order_id(order)
        if link.state in UNPAID_STATES and currency == link.currency:
            self.stripe.update_payment_intent(
                link.payment_intent_id,
                {"amount": amount},
                key=idempotency_key(
                    "update_payment_intent_amount", f"{self.sitecore.id}:{order_id}", amount
                ),
            )
            with self.store.begin() as tx:
                tx.link_order(
                    backend=self.sitecore.id,
                    order_id=order_id,
                    payment_intent_id=link.payment_intent_id,
                    amount_minor=amount,
                    currency=currency,
                )
            log.info("order %s total changed: %s now %s %s", order_id, link.payment_intent_id,
                     amount, currency)  # fmt: skip
            self.summary.count(updated=1)
            return
        # Paid (or a currency switch): charging or refunding the difference is a person's call.
        was = f"{from_minor_units(link.amount_minor, link.currency)} {link.currency.upper()}"
        now = f"{from_minor_units(amount, currency)} {currency.upper()}"
        self.hold(
            order,
            "order.total_changed_after_payment"
            if link.state not in UNPAID_STATES
            else "order.currency_changed",
            f"order total changed from {was} to {now} while the payment is {link.state}; "
            "reconcile by hand (nothing was charged or refunded)",
        )
