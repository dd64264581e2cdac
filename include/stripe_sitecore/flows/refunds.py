"""Refunds asked for in Sitecore become Stripe refunds (flow: ``sitecore_orders_to_stripe``).

Refund requests recorded on a paid order (and a cancel or decline after payment) become Stripe
refunds, one per request however often the run repeats (the request id is in the idempotency key
and in the refund's metadata), never more than what is left to refund. Where the order keeps its
requests, and which statuses close an order, are the backend refund mapping's ``settings:``.

The other direction, Stripe refunds onto the order, is part of ``payments_to_sitecore``: a
refund is one more thing Stripe knows about the PaymentIntent.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict

from stripe_sitecore.backends.base import SitecoreBackend
from stripe_sitecore.clients.stripe_gateway import StripeGateway, idempotency_key
from stripe_sitecore.errors import API_ERRORS, ErrorKind, classify, request_digest
from stripe_sitecore.flows.common import (
    RunSummary,
    flow_settings,
    quarantine,
    quarantine_refusal,
    validated,
)
from stripe_sitecore.mapping import Mapping, load_mapping
from stripe_sitecore.mapping.paths import Path
from stripe_sitecore.money import from_minor_units
from stripe_sitecore.store.state import OrderLink, StateStore

log = logging.getLogger(__name__)

CANCEL_REQUEST_ID = "order-canceled"


class RefundSettings(BaseModel):
    """The refund mapping's ``settings:`` (the file documents each)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    refund_requests_field: str = "xp.RefundRequests"
    closed_order_statuses: tuple[str, ...] = ("Canceled", "Declined")
    refund_on_cancel: bool = True
    auto_refund_actionable_fraud_warnings: bool = False


def refund_settings(sitecore: SitecoreBackend) -> tuple[Mapping, RefundSettings]:
    mapping = load_mapping(sitecore.mappings.refund_request_to_refund)
    return mapping, flow_settings(mapping, RefundSettings)


def order_closed(order: dict[str, Any], sitecore: SitecoreBackend) -> bool:
    """Whether the order will not be fulfilled (canceled, or declined by its approver): its
    PaymentIntent is canceled if nothing was captured, else refunded as ``refund_on_cancel``
    says."""
    _, settings = refund_settings(sitecore)
    return order.get("Status") in settings.closed_order_statuses


def refund_requests(order: dict[str, Any], settings: RefundSettings) -> list[dict[str, Any]]:
    """The order's refund requests, plus a whole-remainder request if it was closed."""
    found = Path.parse(settings.refund_requests_field).get(order)
    requests = [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []
    if order.get("Status") in settings.closed_order_statuses and settings.refund_on_cancel:
        requests.append({"ID": CANCEL_REQUEST_ID, "Reason": "CustomerRequest"})
    return requests


def refund_from_sitecore(
    order: dict[str, Any],
    link: OrderLink,
    stripe_gateway: StripeGateway,
    sitecore: SitecoreBackend,
    store: StateStore,
    summary: RunSummary,
) -> bool:
    """Make the Stripe refunds the order asks for; True if the order asked for any."""
    mapping, settings = refund_settings(sitecore)
    requests = refund_requests(order, settings)
    if not requests or not link.latest_charge_id:
        return False
    source = sitecore.refund_requests_source
    order_id = sitecore.order_id(order)
    charge = stripe_gateway.retrieve_charge(link.latest_charge_id)
    currency = charge["currency"]
    done = {
        (refund.get("metadata") or {}).get("sitecore_refund_request_id")
        for refund in stripe_gateway.iter_list("refunds", {"charge": charge["id"]})
    }
    remaining = charge["amount_captured"] - charge["amount_refunded"]
    to_refund: dict[str, dict[str, Any]] = {}
    by_key: dict[str, dict[str, Any]] = {}
    with store.begin() as tx:
        refused = tx.refused_requests(source, [f"{order_id}:{r.get('ID')}" for r in requests])

    def hold(key: str, rule: str | None, reason: str | None) -> None:
        quarantine(store, summary, source=source, key=key, record=by_key[key], rule=rule,
                   reason=reason)  # fmt: skip

    for request in sorted(requests, key=lambda r: str(r.get("ID"))):
        result = mapping.apply({"Order": order, "Request": request})
        key = f"{order_id}:{request.get('ID')}"
        by_key[key] = {"Order": order, "Request": request}
        if result.outcome == "reject":
            hold(key, result.rule, result.reason)
            continue
        if result.outcome == "skip" or str(request["ID"]) in done:
            continue
        params = dict(result.payload)
        if params.pop("refund_remainder", False):
            params["amount"] = remaining
        if params["amount"] <= 0:
            continue
        if params["amount"] > remaining:
            asked = from_minor_units(params["amount"], currency)
            left = from_minor_units(remaining, currency)
            hold(
                key,
                "refund.exceeds_remaining",
                f"refund request {request['ID']} asks for {asked} {currency.upper()} but only "
                f"{left} {currency.upper()} is left to refund",
            )
            continue
        if request_digest(params) in refused.get(key, ()):
            log.warning("refund request %s: Stripe refused it before as it is; not sent again "
                        "(replay its dead letter after a fix)", key)  # fmt: skip
            continue
        remaining -= params["amount"]
        to_refund[key] = params

    for key in validated(mapping.payload_type, to_refund, by_key, store, summary, source):
        params = to_refund[key]
        request_id = params["metadata"]["sitecore_refund_request_id"]
        try:
            refund = stripe_gateway.create_refund(
                {**params, "payment_intent": link.payment_intent_id},
                key=idempotency_key("refund", f"{sitecore.id}:{order_id}", request_id),
            )
        except API_ERRORS as exc:
            if classify(exc) is not ErrorKind.FINAL:
                raise
            quarantine_refusal(
                store,
                summary,
                exc,
                source=source,
                key=key,
                record=by_key[key],
                request_digest=request_digest(params),
            )
            continue
        log.info("order %s: refund %s of %s minor units for request %s", order_id,
                 refund["id"], params["amount"], request_id)  # fmt: skip
        summary.count(updated=1)
    return True


def refund_actionable_fraud_warnings(
    payment_intent: dict[str, Any], warnings: list[dict[str, Any]], stripe_gateway: StripeGateway
) -> list[str]:
    """Refund what is left of a charge with an actionable early fraud warning (opt-in), as
    Stripe recommends to avoid the dispute."""
    charge = payment_intent["latest_charge"]
    remaining = charge["amount_captured"] - charge["amount_refunded"]
    refunded = []
    for warning in warnings:
        if not warning.get("actionable") or remaining <= 0:
            continue
        refund = stripe_gateway.create_refund(
            {
                "payment_intent": payment_intent["id"],
                "amount": remaining,
                "reason": "fraudulent",
                "metadata": {"sitecore_early_fraud_warning_id": warning["id"]},
            },
            key=idempotency_key("refund_fraud_warning", warning["id"], 1),
        )
        refunded.append(refund["id"])
        remaining = 0
    return refunded
