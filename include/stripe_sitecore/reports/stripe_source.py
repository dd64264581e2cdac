"""Reading Stripe's list endpoints for a window, and flattening the objects into staging rows.

Reports read objects, never only events: events live 30 days and Stripe occasionally fails to
create one (API-NOTES). Every list is asked for ``created`` in ``[start, end)``; expanding
``data.payment_intent`` brings the PaymentIntent's metadata (our order id) along with charges,
refunds, disputes and early fraud warnings, so no object needs a second request.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from stripe_sitecore.clients.stripe_gateway import StripeGateway

ORDER_ID_KEY = "sitecore_order_id"
BACKEND_KEY = "sitecore_backend"
OPEN_DISPUTE_STATUSES = (
    "needs_response",
    "under_review",
    "warning_needs_response",
    "warning_under_review",
)


def iter_stripe(
    gateway: StripeGateway, resource: str, params: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Every object of a list endpoint, as plain dicts.

    ADAPTER: ``StripeGateway.iter_list(resource, params)`` (the clients' owner is adding it) is
    the real home of this; this calls it when the gateway has it and pages with the SDK itself
    otherwise. Drop the fallback once ``iter_list`` is merged.
    """
    iter_list = getattr(gateway, "iter_list", None)
    if iter_list is not None:
        yield from iter_list(resource, params)
        return
    service = gateway.client.v1
    for name in resource.split("."):
        service = getattr(service, name)
    page = service.list(params={"limit": 100, **params})
    for obj in page.auto_paging_iter():
        yield obj.to_dict()


def created_between(start: datetime, end: datetime) -> dict[str, Any]:
    return {"created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())}}


def instant(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


def _id(value: Any) -> str | None:
    """An expandable field's id, whether it came expanded or not."""
    if isinstance(value, dict):
        return value.get("id")
    return value


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """Our order keys: from the expanded PaymentIntent (where we write them), else the object's
    own metadata (charges made outside a PaymentIntent)."""
    payment_intent = obj.get("payment_intent")
    if isinstance(payment_intent, dict) and payment_intent.get("metadata"):
        return payment_intent["metadata"]
    return obj.get("metadata") or {}


def _order_keys(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = _metadata(obj)
    return {
        "payment_intent_id": _id(obj.get("payment_intent")),
        "order_id": metadata.get(ORDER_ID_KEY) or None,
        "backend": metadata.get(BACKEND_KEY) or None,
    }


# --- reconciliation staging rows ---------------------------------------------------------------


def charge_row(charge: dict[str, Any], day: date, *, in_day: bool = True) -> dict[str, Any]:
    return {
        "day": day,
        "charge_id": charge["id"],
        **_order_keys(charge),
        "customer_id": _id(charge.get("customer")),
        "status": charge["status"],
        "captured": bool(charge.get("captured")),
        "amount": charge["amount"],
        "amount_captured": charge.get("amount_captured") or 0,
        "amount_refunded": charge.get("amount_refunded") or 0,
        "currency": charge["currency"].lower(),
        "disputed": bool(charge.get("disputed")),
        "created": instant(charge["created"]),
        "in_day": in_day,
    }


def refund_row(refund: dict[str, Any], day: date) -> dict[str, Any]:
    return {
        "day": day,
        "refund_id": refund["id"],
        "charge_id": _id(refund.get("charge")),
        **_order_keys(refund),
        "status": refund["status"],
        "amount": refund["amount"],
        "currency": refund["currency"].lower(),
        "created": instant(refund["created"]),
    }


def dispute_row(dispute: dict[str, Any], day: date) -> dict[str, Any]:
    return {
        "day": day,
        "dispute_id": dispute["id"],
        "charge_id": _id(dispute.get("charge")),
        **_order_keys(dispute),
        "status": dispute["status"],
        "reason": dispute.get("reason"),
        "amount": dispute["amount"],
        "currency": dispute["currency"].lower(),
        "created": instant(dispute["created"]),
    }


def balance_transaction_row(txn: dict[str, Any], day: date, scope: str) -> dict[str, Any]:
    return {
        "day": day,
        "scope": scope,
        "txn_id": txn["id"],
        "type": txn["type"],
        "reporting_category": txn.get("reporting_category") or txn["type"],
        "source_id": _id(txn.get("source")),
        "amount": txn["amount"],
        "fee": txn.get("fee") or 0,
        "net": txn["net"],
        "currency": txn["currency"].lower(),
        "created": instant(txn["created"]),
    }


def payout_row(payout: dict[str, Any], day: date) -> dict[str, Any]:
    return {
        "day": day,
        "payout_id": payout["id"],
        "status": payout["status"],
        "amount": payout["amount"],
        "currency": payout["currency"].lower(),
        "arrival_date": instant(payout.get("arrival_date")),
        "reconciliation_status": payout.get("reconciliation_status"),
        "created": instant(payout["created"]),
    }


# --- fraud facts -------------------------------------------------------------------------------


def _country(address_holder: Any) -> str | None:
    if not isinstance(address_holder, dict):
        return None
    country = (address_holder.get("address") or {}).get("country")
    return country.upper() if country else None


def fraud_fact(charge: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What the fraud rules need of one charge attempt (any status)."""
    billing = charge.get("billing_details") or {}
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    outcome = charge.get("outcome") or {}
    payment_intent = charge.get("payment_intent")
    shipping = charge.get("shipping")
    if not shipping and isinstance(payment_intent, dict):
        shipping = payment_intent.get("shipping")
    email = billing.get("email") or charge.get("receipt_email")
    if not email and isinstance(payment_intent, dict):
        email = payment_intent.get("receipt_email")
    email = email.strip().lower() if email else None
    customer = _id(charge.get("customer"))
    keys = _order_keys(charge)
    return {
        "charge_id": charge["id"],
        **keys,
        # The person behind a payment: their e-mail, else the Stripe customer.
        "customer_key": email or customer,
        "email": email,
        "card_fingerprint": card.get("fingerprint"),
        "card_country": (card.get("country") or "").upper() or None,
        "billing_country": _country(billing),
        "shipping_country": _country(shipping),
        "status": charge["status"],
        "captured": bool(charge.get("captured")),
        "amount": charge["amount"],
        "currency": charge["currency"].lower(),
        "risk_level": outcome.get("risk_level"),
        "risk_score": outcome.get("risk_score"),
        "outcome_type": outcome.get("type"),
        "created": instant(charge["created"]),
        "updated_at": now,
    }


def signal_row(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """An early fraud warning or a dispute, reduced to what the fraud rules and report show."""
    row = {
        "kind": kind,
        "id": obj["id"],
        "charge_id": _id(obj.get("charge")),
        **_order_keys(obj),
        "created": instant(obj["created"]),
    }
    if kind == "early_fraud_warning":
        row.update(fraud_type=obj.get("fraud_type"), actionable=bool(obj.get("actionable")))
    else:
        row.update(
            status=obj.get("status"),
            reason=obj.get("reason"),
            amount=obj.get("amount"),
            currency=(obj.get("currency") or "").lower() or None,
        )
    return row


# --- readers -----------------------------------------------------------------------------------

EXPAND_PAYMENT_INTENT = ["data.payment_intent"]


def charges(gateway: StripeGateway, start: datetime, end: datetime) -> Iterator[dict]:
    params = {**created_between(start, end), "expand": EXPAND_PAYMENT_INTENT}
    return iter_stripe(gateway, "charges", params)


def refunds(gateway: StripeGateway, start: datetime, end: datetime) -> Iterator[dict]:
    params = {**created_between(start, end), "expand": EXPAND_PAYMENT_INTENT}
    return iter_stripe(gateway, "refunds", params)


def disputes(gateway: StripeGateway, start: datetime, end: datetime) -> Iterator[dict]:
    params = {**created_between(start, end), "expand": EXPAND_PAYMENT_INTENT}
    return iter_stripe(gateway, "disputes", params)


def early_fraud_warnings(gateway: StripeGateway, start: datetime, end: datetime) -> Iterator[dict]:
    params = {**created_between(start, end), "expand": EXPAND_PAYMENT_INTENT}
    return iter_stripe(gateway, "radar.early_fraud_warnings", params)


def balance_transactions(gateway: StripeGateway, start: datetime, end: datetime) -> Iterator[dict]:
    return iter_stripe(gateway, "balance_transactions", created_between(start, end))


def payout_transactions(gateway: StripeGateway, payout_id: str) -> Iterator[dict]:
    return iter_stripe(gateway, "balance_transactions", {"payout": payout_id})


def payouts(gateway: StripeGateway, start: datetime, end: datetime) -> Iterator[dict]:
    return iter_stripe(gateway, "payouts", created_between(start, end))
