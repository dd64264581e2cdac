"""Paid orders to the ERP: drain the outbox that the payment flow fills, exactly once per order.

The outbox row is written in the same state-DB transaction as the ledger's move to "paid", so no
paid order is forgotten; the ERP call carries an ``Idempotency-Key`` per order, so a retry after
a lost answer is recognised as a duplicate instead of a second fulfilment.
"""

from __future__ import annotations

import logging
from typing import Any

from stripe_sitecore.backends.base import SitecoreBackend
from stripe_sitecore.clients.erp import ERPClient
from stripe_sitecore.errors import API_ERRORS, ConfigurationError, ErrorKind, classify, refusal
from stripe_sitecore.flows.common import RunSummary, run_each
from stripe_sitecore.mapping import load_mapping
from stripe_sitecore.store.state import ERP_TOPIC, OutboxMessage, StateStore
from stripe_sitecore.validation import jsonable, validate_batch

log = logging.getLogger(__name__)

SOURCE_ERP = "erp.orders"
# Attempts per message (each task try counts one) before it becomes a dead letter.
MAX_ATTEMPTS = 8


def drain_erp_outbox(
    sitecore: SitecoreBackend,
    erp: ERPClient,
    store: StateStore,
    *,
    batch_size: int = 500,
    max_attempts: int = MAX_ATTEMPTS,
) -> RunSummary:
    summary = RunSummary()
    with store.begin() as tx:
        messages = [
            m
            for m in tx.pending_messages(ERP_TOPIC, limit=batch_size)
            # Another backend's messages wait for that backend's deployment.
            if m.payload.get("backend", sitecore.id) == sitecore.id
        ]
    summary.read = len(messages)
    if not messages:
        return summary

    mapping = load_mapping(sitecore.mappings.order_to_erp)
    orders: dict[str, dict[str, Any]] = {}
    payloads: dict[str, dict[str, Any]] = {}
    by_order = {m.payload["order_id"]: m for m in messages}

    def read_and_map(order_id: str) -> None:
        message = by_order[order_id]
        try:
            order = sitecore.get_order(order_id)
        except API_ERRORS as exc:
            _delivery_error(message, message.payload, exc, store, summary, max_attempts)
            return
        orders[order_id] = order
        result = mapping.apply(order)
        if result.outcome == "map":
            payloads[order_id] = result.payload
        else:
            _dead(message, order, result.rule or "mapping", result.reason or "", store, summary)

    run_each(sorted(by_order), read_and_map, lambda oid: f"order {oid}", summary)
    if payloads and mapping.payload_type:
        report = validate_batch(mapping.payload_type, sorted(payloads.items()))
        log.info("validation: %s", report.summary())
        for order_id, failures in report.failed.items():
            reason = "; ".join(f"{f.expectation}: {f.reason}" for f in failures)
            _dead(by_order[order_id], orders[order_id], failures[0].rule, reason, store, summary)
            payloads.pop(order_id)

    def submit(order_id: str) -> None:
        message = by_order[order_id]
        try:
            receipt = erp.submit_order(
                payloads[order_id], idempotency_key=f"erp-order:{sitecore.id}:{order_id}"
            )
        except API_ERRORS as exc:
            _delivery_error(message, orders[order_id], exc, store, summary, max_attempts)
            return
        with store.begin() as tx:
            tx.finish_message(message.id)
        log.info(
            "order %s -> ERP %s%s",
            order_id,
            receipt.erp_order_id,
            " (already there)" if receipt.duplicate else "",
        )
        summary.created += 1

    run_each(sorted(payloads), submit, lambda oid: f"order {oid}", summary)
    return summary


def _delivery_error(
    message: OutboxMessage,
    record: dict[str, Any],
    error: BaseException,
    store: StateStore,
    summary: RunSummary,
    max_attempts: int,
) -> None:
    """What an API error means for one message: try again later, a dead letter now (the ERP or
    OrderCloud refused it: a retry would be refused the same way), or stop the task (the
    credentials are wrong for every message)."""
    kind = classify(error)
    if kind is ErrorKind.CONFIG:
        raise ConfigurationError(f"order {message.payload['order_id']}: {error}") from error
    if kind is ErrorKind.FINAL:
        refused = refusal(error)
        _dead(message, record, refused.rule, refused.reason, store, summary)
    else:
        _failed(message, error, store, summary, max_attempts)


def _failed(
    message: OutboxMessage, error: Exception, store: StateStore, summary: RunSummary, limit: int
) -> None:
    give_up = message.attempts + 1 >= limit
    with store.begin() as tx:
        tx.finish_message(message.id, error=str(error)[:2000], give_up=give_up)
        if give_up:
            tx.quarantine(
                source=SOURCE_ERP,
                record_key=message.payload["order_id"],
                record=message.payload,
                rule="erp.delivery_failed",
                reason=f"gave up after {message.attempts + 1} attempts: {error}",
            )
    if give_up:
        summary.quarantined += 1
    summary.fail(f"order {message.payload['order_id']}", error, log)


def _dead(
    message: OutboxMessage,
    order: dict[str, Any],
    rule: str,
    reason: str,
    store: StateStore,
    summary: RunSummary,
) -> None:
    """A message no retry can deliver (the order does not map): quarantine it for a person."""
    with store.begin() as tx:
        tx.finish_message(message.id, error=reason, give_up=True)
        tx.quarantine(
            source=SOURCE_ERP,
            record_key=message.payload["order_id"],
            record=jsonable(order),
            rule=rule,
            reason=reason,
        )
    log.warning("order %s not sent to the ERP (%s): %s", message.payload["order_id"], rule, reason)
    summary.quarantined += 1
