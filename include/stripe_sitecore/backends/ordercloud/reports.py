"""Reading the Sitecore (OrderCloud) side of a day, and flattening orders into staging rows.

A day's orders are the union of three list queries (submitted, last updated, canceled in the
window), because ``LastUpdated`` alone moves on with every later write: a backfill of last month
would miss an order refunded since. Orders that only a Stripe object points at are fetched by id
later (``fetch_orders``). Payment state is the order's ``xp.PaymentStatus`` plus its payments:
an accepted credit-card payment means paid, a succeeded ``CreditCardRefund`` transaction refunded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from stripe_sitecore.backends.ordercloud.client import Filters, OrderCloudClient, OrderCloudNotFound
from stripe_sitecore.money import to_minor_units_or_none
from stripe_sitecore.reports.settings import ReconciliationSettings

# Payments are read one request per order; a few at a time keeps a day's read short.
PAYMENT_READERS = 8
REFUND_TRANSACTION_TYPE = "CreditCardRefund"
STRIPE_PAYMENT_TYPE = "CreditCard"


def parse_instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def window_orders(
    ordercloud: OrderCloudClient, start: datetime, end: datetime, *, submitted_from: datetime
) -> Iterator[dict[str, Any]]:
    """Orders submitted in ``[submitted_from, end)`` or updated or canceled in ``[start, end)``,
    each once."""
    queries = (
        Filters().not_less("DateSubmitted", submitted_from).less("DateSubmitted", end),
        Filters().not_less("LastUpdated", start).less("LastUpdated", end),
        Filters().not_less("DateCanceled", start).less("DateCanceled", end),
    )
    seen: set[str] = set()
    for filters in queries:
        for order in ordercloud.list_orders(filters):
            if order["ID"] not in seen:
                seen.add(order["ID"])
                yield order


def fetch_orders(
    ordercloud: OrderCloudClient, order_ids: Iterable[str]
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """``(id, order)`` for each id; ``None`` when OrderCloud has no such order."""
    for order_id in order_ids:
        try:
            yield order_id, ordercloud.get_order(order_id)
        except OrderCloudNotFound:
            yield order_id, None


def with_payments(
    ordercloud: OrderCloudClient, orders: Iterable[dict[str, Any]], batch: int = 200
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each order with its payments, read a few orders at a time."""
    from stripe_sitecore.store.reports import batched

    def payments(order: dict[str, Any]) -> list[dict[str, Any]]:
        return ordercloud.list_payments(order["ID"])

    with ThreadPoolExecutor(PAYMENT_READERS, thread_name_prefix="payments") as pool:
        for chunk in batched(orders, batch):
            yield from zip(chunk, pool.map(payments, chunk), strict=True)


def order_row(
    order: dict[str, Any],
    payments: list[dict[str, Any]] | None,
    day: date,
    settings: ReconciliationSettings,
) -> dict[str, Any]:
    xp = order.get("xp") or {}
    currency = order.get("Currency")
    payment_status = xp.get("PaymentStatus")
    payments = payments or []
    accepted = any(p.get("Accepted") and p.get("Type") == STRIPE_PAYMENT_TYPE for p in payments)
    refund_transactions = [
        t
        for p in payments
        for t in p.get("Transactions") or []
        if t.get("Type") == REFUND_TRANSACTION_TYPE and t.get("Succeeded")
    ]
    refunded_minor = sum(
        to_minor_units_or_none(t.get("Amount"), t.get("Currency") or currency) or 0
        for t in refund_transactions
    )
    total = order.get("Total")
    return {
        "day": day,
        "order_id": order["ID"],
        "found": True,
        "currency": currency.lower() if currency else None,
        "total_minor": to_minor_units_or_none(total, currency),
        "total": None if total is None else str(Decimal(total)),
        "status": order.get("Status"),
        "payment_status": payment_status,
        "payment_method": xp.get("PaymentMethod"),
        "payment_intent_id": xp.get("StripePaymentIntentID"),
        "paid": payment_status in settings.paid_statuses or accepted,
        "refunded": payment_status in settings.refunded_statuses or bool(refund_transactions),
        "refunded_minor": refunded_minor,
        "date_submitted": parse_instant(order.get("DateSubmitted")),
        "date_canceled": parse_instant(order.get("DateCanceled")),
        "last_updated": parse_instant(order.get("LastUpdated")),
    }


def missing_order_row(order_id: str, day: date) -> dict[str, Any]:
    """An order id a Stripe object carries that OrderCloud does not know."""
    return {
        "day": day,
        "order_id": order_id,
        "found": False,
        "paid": False,
        "refunded": False,
        "refunded_minor": 0,
    }


def no_pi_window_start(start: datetime, settings: ReconciliationSettings) -> datetime:
    """Orders submitted from here on are checked for a PaymentIntent by this day's run: the
    check looks at ``[start - grace, end - grace)``, so every order is checked exactly once,
    by the first run that ends at least the grace period after its submission."""
    return start - timedelta(minutes=settings.grace_period_minutes)
