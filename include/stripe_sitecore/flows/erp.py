"""Paid orders to the ERP, complete, with inventory reserved and the outcome written back
(DAG ``paid_orders_to_erp``); and what happens to them afterwards.

Two outbox topics, both filled in the same state-DB transaction as the ledger move that causes
them, so nothing is forgotten:

- ``erp.orders``: a newly paid order. Gather the order with its line items (the backend's
  ``fulfilment_record``: one request for OrderCloud, its worksheet) and the payment (the
  PaymentIntent with its charge and balance transaction: fee and net); plan the ``erp.v1``
  message with the backend's ERP mapping, checked by its suite and by the contract (lines +
  shipping + tax - discounts must be the total exactly, else a dead letter with the
  difference); apply it (the ERP reserves stock per line and answers each line's status);
  commit: the message is done and the outcome is written back onto the Sitecore order
  (fulfilment annotation). A backordered or rejected line alerts and is a dead letter for a
  person: never a silent success.
- ``erp.changes``: a refund (return), a full refund (cancel) or a lost dispute (release) after
  hand-off. Sent only once the ERP has the order, each exactly once (a deterministic message id
  and idempotency key).

Every ERP call carries an ``Idempotency-Key``, so a retry after a lost answer reserves nothing
twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from stripe_sitecore import contracts
from stripe_sitecore.alerting.data import data_alert
from stripe_sitecore.backends.base import SitecoreBackend
from stripe_sitecore.clients.erp import ERPClient, ERPOrderAnswer
from stripe_sitecore.clients.stripe_gateway import StripeGateway
from stripe_sitecore.errors import API_ERRORS, ConfigurationError, ErrorKind, classify, refusal
from stripe_sitecore.flows.common import RunSummary, quarantine, run_each
from stripe_sitecore.mapping import load_mapping
from stripe_sitecore.store.state import (
    ERP_CHANGES_TOPIC,
    ERP_TOPIC,
    OutboxMessage,
    StateStore,
)
from stripe_sitecore.validation import jsonable, validate_batch

log = logging.getLogger(__name__)

SOURCE_ERP = "erp.orders"
SOURCE_FULFILMENT = "erp.fulfilment"
SOURCE_CHANGES = "erp.changes"
# Attempts per message (each task try counts one) before it becomes a dead letter.
MAX_ATTEMPTS = 8
# The PaymentIntent as the ERP message needs it: the charge, and its fee and net.
PAYMENT_EXPAND = ["latest_charge.balance_transaction"]


def drain_erp_outbox(
    sitecore: SitecoreBackend,
    stripe_gateway: StripeGateway,
    erp: ERPClient,
    store: StateStore,
    *,
    batch_size: int = 500,
    max_attempts: int = MAX_ATTEMPTS,
) -> RunSummary:
    """Deliver the pending paid orders, then the changes to orders the ERP already has."""
    summary = RunSummary()
    run = _ErpRun(sitecore, stripe_gateway, erp, store, summary, max_attempts)
    with store.begin() as tx:
        orders = run.ours(tx.pending_messages(ERP_TOPIC, limit=batch_size))
        changes = run.ours(tx.pending_messages(ERP_CHANGES_TOPIC, limit=batch_size))
    summary.read = len(orders) + len(changes)
    if orders:
        run.deliver_orders(orders)
    if changes:
        run.deliver_changes(changes)
    return summary


class _ErpRun:
    def __init__(self, sitecore, stripe_gateway, erp, store, summary, max_attempts):
        self.sitecore: SitecoreBackend = sitecore
        self.stripe: StripeGateway = stripe_gateway
        self.erp: ERPClient = erp
        self.store: StateStore = store
        self.summary: RunSummary = summary
        self.max_attempts = max_attempts

    def ours(self, messages: list[OutboxMessage]) -> list[OutboxMessage]:
        # Another backend's messages wait for that backend's deployment.
        backend = self.sitecore.id
        return [m for m in messages if m.payload.get("backend", backend) == backend]

    # --- paid orders ---------------------------------------------------------------------
    def deliver_orders(self, messages: list[OutboxMessage]) -> None:
        mapping = load_mapping(self.sitecore.mappings.order_to_erp)
        by_order = {m.payload["order_id"]: m for m in messages}
        records: dict[str, dict[str, Any]] = {}
        payloads: dict[str, dict[str, Any]] = {}

        def gather_and_plan(order_id: str) -> None:
            message = by_order[order_id]
            try:
                record = self.sitecore.fulfilment_record(order_id)
                record["Payment"] = self.stripe.retrieve_payment_intent(
                    message.payload["payment_intent_id"], expand=PAYMENT_EXPAND
                )
            except API_ERRORS as exc:
                self.delivery_error(message, message.payload, exc)
                return
            records[order_id] = record
            result = mapping.apply(record)
            if result.outcome != "map":
                self.dead(message, record, result.rule or "mapping", result.reason or "")
                return
            problems = contracts.errors("order", result.payload)
            if problems:
                rule = (
                    "erp.totals_do_not_add_up"
                    if any("difference" in p or "is not" in p for p in problems)
                    else "erp.contract"
                )
                self.dead(message, record, rule, "; ".join(problems))
                return
            payloads[order_id] = result.payload

        run_each(sorted(by_order), gather_and_plan, lambda oid: f"order {oid}", self.summary)
        if payloads and mapping.payload_type:
            report = validate_batch(mapping.payload_type, sorted(payloads.items()))
            log.info("validation: %s", report.summary())
            for order_id, failures in report.failed.items():
                reason = "; ".join(f"{f.expectation}: {f.reason}" for f in failures)
                self.dead(by_order[order_id], records[order_id], failures[0].rule, reason)
                payloads.pop(order_id)

        def apply_and_commit(order_id: str) -> None:
            message = by_order[order_id]
            key = self.erp.idempotency_key("order", self.sitecore.id, order_id)
            try:
                answer = self.erp.submit_order_v1(payloads[order_id], idempotency_key=key)
            except API_ERRORS as exc:
                self.delivery_error(message, records[order_id], exc)
                return
            with self.store.begin() as tx:
                tx.finish_message(message.id)
            self.report_outcome(order_id, answer)
            self.summary.count(created=1)

        run_each(sorted(payloads), apply_and_commit, lambda oid: f"order {oid}", self.summary)

    def report_outcome(self, order_id: str, answer: ERPOrderAnswer) -> None:
        """Write what the ERP did onto the Sitecore order, and make sure a person sees a line
        that could not be reserved."""
        lines = [
            {
                "line_id": line.line_id,
                "sku": line.sku,
                "status": line.status,
                "quantity": line.quantity,
                "reserved_quantity": line.reserved_quantity,
                "backordered_quantity": line.backordered_quantity,
                "reason": line.reason,
            }
            for line in answer.lines or ()
        ]
        statuses = {line["status"] for line in lines}
        status = next((s for s in ("rejected", "backordered") if s in statuses), "reserved")
        log.info("order %s -> ERP %s: %s%s", order_id, answer.erp_order_id, status,
                 " (already there)" if answer.duplicate else "")  # fmt: skip
        outcome = {
            "erp_order_id": answer.erp_order_id,
            "status": status if lines else "received",
            "lines": lines,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        name = self.sitecore.mappings.fulfillment
        if name:
            result = load_mapping(name).apply(outcome)
            if result.outcome == "map":
                patch = self.sitecore.annotation_patch("fulfillment", result.payload)
                self.sitecore.annotate(order_id, patch)
            else:
                log.warning("order %s: fulfilment outcome not written: %s", order_id,
                            result.reason)  # fmt: skip
        if status in ("backordered", "rejected") and not answer.duplicate:
            short = [line for line in lines if line["status"] != "reserved"]
            shown = ", ".join(f"{line['sku']} {line['status']}" for line in short)
            quarantine(
                self.store,
                None,
                source=SOURCE_FULFILMENT,
                key=order_id,
                record={"order_id": order_id, "erp_order_id": answer.erp_order_id, "lines": short},
                rule=f"erp.{status}",
                reason=f"the ERP could not reserve every line of order {order_id}: {shown}",
            )
            data_alert(
                f"erp.{status}",
                f"order {order_id}: {shown} (ERP order {answer.erp_order_id})",
                {"order_id": order_id, "erp_order_id": answer.erp_order_id, "lines": short},
                severity="warning",
            )

    # --- changes after hand-off --------------------------------------------------------------
    def deliver_changes(self, messages: list[OutboxMessage]) -> None:
        with self.store.begin() as tx:
            delivered = {
                m.payload["order_id"]: tx.message_status(
                    ERP_TOPIC, f"{self.sitecore.id}:{m.payload['order_id']}"
                )
                for m in messages
            }

        def send(message: OutboxMessage) -> None:
            change = message.payload
            order_status = delivered.get(change["order_id"])
            if order_status in ("pending", None):
                return  # the ERP does not have the order yet: it waits for it
            if order_status == "dead":
                # The ERP never got the order, so there is nothing to cancel or return there.
                with self.store.begin() as tx:
                    tx.finish_message(message.id)
                self.summary.count(skipped=1)
                return
            body = {
                "contract": "erp.v1",
                "type": change["kind"],
                "message_id": change["message_id"],
                "order_id": change["order_id"],
                "reason": change.get("reason"),
                "occurred_at": change["occurred_at"],
                "source": change["source"],
                **({"amount": change["amount"], "currency": change["currency"]}
                   if change["kind"] == "return" else {}),
            }  # fmt: skip
            key = self.erp.idempotency_key(
                change["kind"], self.sitecore.id, change["order_id"], change["source"]["id"]
            )
            send_as = {
                "cancel": self.erp.cancel_order,
                "return": self.erp.return_order,
                "release": self.erp.release_order,
            }[change["kind"]]
            try:
                answer = send_as(body, idempotency_key=key)
            except API_ERRORS as exc:
                self.delivery_error(message, change, exc, source=SOURCE_CHANGES)
                return
            with self.store.begin() as tx:
                tx.finish_message(message.id)
            again = " (already applied)" if answer.duplicate else ""
            log.info("order %s: ERP %s %s%s", change["order_id"], change["kind"],
                     answer.order_status, again)  # fmt: skip
            self.summary.count(updated=1)

        run_each(messages, send, lambda m: f"order {m.payload['order_id']}", self.summary)

    # --- failures ------------------------------------------------------------------------
    def delivery_error(
        self,
        message: OutboxMessage,
        record: dict[str, Any],
        error: BaseException,
        source: str = SOURCE_ERP,
    ) -> None:
        """Try again later, a dead letter now (refused: a retry would be refused the same way),
        or stop the task (the credentials are wrong for every message)."""
        kind = classify(error)
        if kind is ErrorKind.CONFIG:
            raise ConfigurationError(f"order {message.payload['order_id']}: {error}") from error
        if kind is ErrorKind.FINAL:
            refused = refusal(error)
            self.dead(message, record, refused.rule, refused.reason, source=source)
            return
        give_up = message.attempts + 1 >= self.max_attempts
        with self.store.begin() as tx:
            tx.finish_message(message.id, error=str(error)[:2000], give_up=give_up)
            if give_up:
                tx.quarantine(
                    source=source,
                    record_key=message.message_key,
                    record=message.payload,
                    rule="erp.delivery_failed",
                    reason=f"gave up after {message.attempts + 1} attempts: {error}",
                )
        if give_up:
            self.summary.count(quarantined=1)
        self.summary.fail(f"order {message.payload['order_id']}", error, log)

    def dead(
        self,
        message: OutboxMessage,
        record: dict[str, Any],
        rule: str,
        reason: str,
        *,
        source: str = SOURCE_ERP,
    ) -> None:
        """A message no retry can deliver: quarantine it for a person."""
        with self.store.begin() as tx:
            tx.finish_message(message.id, error=reason, give_up=True)
            tx.quarantine(
                source=source,
                record_key=message.payload["order_id"]
                if source == SOURCE_ERP
                else message.message_key,
                record=jsonable(record),
                rule=rule,
                reason=reason,
            )
        log.warning("order %s not sent to the ERP (%s): %s", message.payload["order_id"], rule,
                    reason)  # fmt: skip
        self.summary.count(quarantined=1)
