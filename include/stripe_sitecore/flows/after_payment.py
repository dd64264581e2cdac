"""What happens to a paid order afterwards: refunds both ways, disputes, fraud signals.

Sitecore -> Stripe: refund requests recorded on the order (and a cancel after payment) become
Stripe refunds, one per request however often the run repeats (the request id is in the
idempotency key and in the refund's metadata), never more than what is left to refund.

Stripe -> Sitecore: refunds become refund transactions on the OrderCloud payment, disputes and
early fraud warnings become ``xp.DisputeStatus`` and ``xp.FraudReview`` on the order.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from stripe_sitecore.clients.ordercloud import OrderCloudClient
from stripe_sitecore.clients.stripe_gateway import StripeGateway, idempotency_key
from stripe_sitecore.errors import API_ERRORS, ErrorKind, classify, request_digest
from stripe_sitecore.flows.common import BACKEND, RunSummary, quarantine, quarantine_refusal
from stripe_sitecore.mapping import Mapping, load_mapping
from stripe_sitecore.mapping.paths import Path
from stripe_sitecore.money import from_minor_units
from stripe_sitecore.store.state import OrderLink, StateStore
from stripe_sitecore.validation import quarantine_failures, validate_batch

log = logging.getLogger(__name__)

SOURCE_REFUNDS = "ordercloud.refund_requests"
REFUND_MAPPING = "ordercloud_refund_request_to_stripe_refund"
CANCEL_REQUEST_ID = "order-canceled"
DEFAULT_CLOSED_STATUSES = ("Canceled", "Declined")
TERMINAL_REFUND_STATUSES = frozenset({"succeeded", "failed", "canceled"})
RISKY_LEVELS = frozenset({"elevated", "highest"})
RISKY_OUTCOMES = frozenset({"manual_review", "blocked"})


# --- Sitecore -> Stripe ------------------------------------------------------------------


def order_closed(order: dict[str, Any], mapping: Mapping | None = None) -> bool:
    """Whether the order will not be fulfilled (canceled, or declined by its approver): its
    PaymentIntent is canceled if nothing was captured, else refunded as ``refund_on_cancel``
    says. The statuses are the refund mapping's ``closed_order_statuses``."""
    mapping = mapping or load_mapping(REFUND_MAPPING)
    closed = mapping.settings.get("closed_order_statuses", DEFAULT_CLOSED_STATUSES)
    return order.get("Status") in closed


def refund_requests(order: dict[str, Any], mapping: Mapping) -> list[dict[str, Any]]:
    """The order's refund requests, plus a whole-remainder request if it was canceled."""
    field = mapping.settings.get("refund_requests_field", "xp.RefundRequests")
    found = Path.parse(field).get(order)
    requests = [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []
    if order_closed(order, mapping) and mapping.settings.get("refund_on_cancel", True):
        requests.append({"ID": CANCEL_REQUEST_ID, "Reason": "CustomerRequest"})
    return requests


def refund_from_sitecore(
    order: dict[str, Any],
    link: OrderLink,
    stripe_gateway: StripeGateway,
    store: StateStore,
    summary: RunSummary,
) -> bool:
    """Make the Stripe refunds the order asks for; True if the order asked for any."""
    mapping = load_mapping(REFUND_MAPPING)
    requests = refund_requests(order, mapping)
    if not requests or not link.latest_charge_id:
        return False
    order_id = order["ID"]
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
        refused = tx.refused_requests(
            SOURCE_REFUNDS, [f"{order_id}:{r.get('ID')}" for r in requests]
        )
    for request in sorted(requests, key=lambda r: str(r.get("ID"))):
        result = mapping.apply({"Order": order, "Request": request})
        key = f"{order_id}:{request.get('ID')}"
        by_key[key] = {"Order": order, "Request": request}
        if result.outcome == "reject":
            _quarantine(store, key, by_key[key], result.rule, result.reason, summary)
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
            _quarantine(
                store,
                key,
                by_key[key],
                "refund.exceeds_remaining",
                f"refund request {request['ID']} asks for {asked} {currency.upper()} but only "
                f"{left} {currency.upper()} is left to refund",
                summary,
            )
            continue
        if request_digest(params) in refused.get(key, ()):
            log.warning("refund request %s: Stripe refused it before as it is; not sent again "
                        "(replay its dead letter after a fix)", key)  # fmt: skip
            continue
        remaining -= params["amount"]
        to_refund[key] = params

    if to_refund:
        report = validate_batch("stripe_refund_create", list(to_refund.items()))
        log.info("validation: %s", report.summary())
        if report.failed:
            with store.begin() as tx:
                summary.quarantined += quarantine_failures(report, by_key, tx, SOURCE_REFUNDS)
        for key in report.passed:
            params = to_refund[key]
            request_id = params["metadata"]["sitecore_refund_request_id"]
            try:
                refund = stripe_gateway.create_refund(
                    {**params, "payment_intent": link.payment_intent_id},
                    key=idempotency_key("refund", f"{BACKEND}:{order_id}", request_id),
                )
            except API_ERRORS as exc:
                if classify(exc) is not ErrorKind.FINAL:
                    raise
                quarantine_refusal(
                    store,
                    summary,
                    exc,
                    source=SOURCE_REFUNDS,
                    key=key,
                    record=by_key[key],
                    request_digest=request_digest(params),
                )
                continue
            log.info("order %s: refund %s of %s minor units for request %s", order_id,
                     refund["id"], params["amount"], request_id)  # fmt: skip
            summary.updated += 1
    return True


def _quarantine(store, record_key, record, rule, reason, summary) -> None:
    quarantine(
        store,
        summary,
        source=SOURCE_REFUNDS,
        key=record_key,
        record=record,
        rule=rule,
        reason=reason,
    )


# --- Stripe -> Sitecore ------------------------------------------------------------------


def record_refunds(
    order_id: str,
    payment_intent: dict[str, Any],
    payment_mapping: Mapping,
    stripe_gateway: StripeGateway,
    ordercloud: OrderCloudClient,
) -> dict[str, Any]:
    """Refund transactions for the charge's finished refunds; returns xp to write, if any."""
    charge = payment_intent["latest_charge"]
    xp: dict[str, Any] = {}
    for refund in stripe_gateway.iter_list("refunds", {"charge": charge["id"]}):
        if refund["status"] not in TERMINAL_REFUND_STATUSES:
            continue  # pending: written when Stripe reports how it ended
        result = payment_mapping.apply({**payment_intent, "refund": refund})
        if result.outcome != "map":
            continue
        created = ordercloud.create_payment_transaction(
            order_id, payment_intent["id"], result.payload["refund_transaction"]
        )
        if refund["status"] != "succeeded":
            xp["LastRefundStatus"] = "Failed"
            xp["LastRefundFailureReason"] = refund.get("failure_reason") or refund["status"]
        if created:
            log.info("order %s: refund %s (%s) recorded", order_id, refund["id"], refund["status"])
    return xp


def dispute_xp(
    payment_intent: dict[str, Any], payment_mapping: Mapping, stripe_gateway: StripeGateway
) -> dict[str, Any]:
    """``xp.DisputeStatus`` and details from the charge's newest dispute."""
    disputes = list(
        stripe_gateway.iter_list("disputes", {"charge": payment_intent["latest_charge"]["id"]})
    )
    if not disputes:
        return {}
    dispute = max(disputes, key=lambda d: d["created"])
    result = payment_mapping.apply({**payment_intent, "dispute": dispute})
    if result.outcome != "map":
        return {}
    return result.payload["order_patch"]["xp"]


def fraud_review(payment_intent: dict[str, Any], stripe_gateway: StripeGateway) -> dict | None:
    """``xp.FraudReview``: Radar's view of the charge and any early fraud warnings on it."""
    charge = payment_intent["latest_charge"]
    outcome = charge.get("outcome") or {}
    warnings = list(
        stripe_gateway.iter_list("radar.early_fraud_warnings", {"charge": charge["id"]})
    )
    risky = outcome.get("risk_level") in RISKY_LEVELS or outcome.get("type") in RISKY_OUTCOMES
    if not warnings and not risky:
        return None
    return {
        "RiskLevel": outcome.get("risk_level"),
        "RiskScore": outcome.get("risk_score"),
        "OutcomeType": outcome.get("type"),
        "ChargeID": charge["id"],
        "EarlyFraudWarnings": [
            {
                "ID": w["id"],
                "FraudType": w.get("fraud_type"),
                "Actionable": bool(w.get("actionable")),
                "Created": datetime.fromtimestamp(w["created"], UTC).isoformat(),
            }
            for w in sorted(warnings, key=lambda w: w["created"])
        ],
    }


def refund_actionable_fraud_warnings(
    payment_intent: dict[str, Any], review: dict[str, Any], stripe_gateway: StripeGateway
) -> list[str]:
    """Refund what is left of a charge with an actionable early fraud warning (opt-in)."""
    charge = payment_intent["latest_charge"]
    remaining = charge["amount_captured"] - charge["amount_refunded"]
    refunded = []
    for warning in review["EarlyFraudWarnings"]:
        if not warning["Actionable"] or remaining <= 0:
            continue
        refund = stripe_gateway.create_refund(
            {
                "payment_intent": payment_intent["id"],
                "amount": remaining,
                "reason": "fraudulent",
                "metadata": {"sitecore_early_fraud_warning_id": warning["ID"]},
            },
            key=idempotency_key("refund_fraud_warning", warning["ID"], 1),
        )
        refunded.append(refund["id"])
        remaining = 0
    return refunded
