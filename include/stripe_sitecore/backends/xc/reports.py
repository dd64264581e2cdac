"""Reading the Sitecore XC side of a day, and flattening orders into staging rows.

A day's orders are those the orders search finds placed in ``[submitted_from, end)``
(``OrderPlacedDate``) or updated in ``[start, end)`` (``DateUpdated``; a cancellation is an
update: XC keeps no cancel date), each re-read as it is now. The index trails writes (the
IncrementalIndexMinion, every 5 minutes by default): the daily run starts two hours after the
day ends, far past that lag, and an order only a Stripe object points at is fetched by id later
(``fetch_orders``), whatever the index says.

Payment facts come from the order's ``SalesActivities``, XC's payment ledger: what was settled
on the integration's federated payment (its id is the PaymentIntent's) and what was refunded
(negative activities other than voids), in exact minor units. The payment status is the
integration's component's ``PaymentStatus`` (the same vocabulary as OrderCloud's
``xp.PaymentStatus``, so the reports' settings apply to both).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from stripe_sitecore.backends.xc.client import (
    FEDERATED_PAYMENT,
    ORDERS_SCOPE,
    XCClient,
    XCNotFound,
    components,
    federated_payments,
    format_instant,
    parse_instant,
    parse_money,
)
from stripe_sitecore.money import to_minor_units_or_none
from stripe_sitecore.reports.settings import ReconciliationSettings

# Orders and their sales activities are read one request each; a few at a time.
READERS = 8
SETTLED_STATUSES = frozenset({"Settled", "Completed"})
# The reports' vocabulary is OrderCloud's (the classification SQL is shared): XC's "Cancelled"
# is a canceled order there.
REPORT_STATUSES = {"Cancelled": "Canceled"}
PAYMENT_INTENT_PREFIX = "pi_"


def _window(field: str, since: datetime, until: datetime) -> str:
    return f"{field} ge {format_instant(since)} and {field} lt {format_instant(until)}"


def window_order_ids(
    client: XCClient, start: datetime, end: datetime, *, submitted_from: datetime
) -> list[str]:
    """Ids of the orders placed in ``[submitted_from, end)`` or updated in ``[start, end)``,
    each once, as the index shows them."""
    seen: dict[str, None] = {}
    for field, since in (("OrderPlacedDate", submitted_from), ("DateUpdated", start)):
        if since >= end:
            continue
        for document in client.search(
            ORDERS_SCOPE, filter=_window(field, since, end), order_by=f"{field} asc"
        ):
            if isinstance(document.get("EntityId"), str):
                seen.setdefault(document["EntityId"])
    return list(seen)


def window_orders(
    client: XCClient, start: datetime, end: datetime, *, submitted_from: datetime
) -> Iterator[dict[str, Any]]:
    """The window's orders (``window_order_ids``), each read as it is now; one deleted since it
    was indexed is left out."""

    def read(order_id: str) -> dict[str, Any] | None:
        try:
            return client.get_order(order_id)
        except XCNotFound:
            return None

    ids = window_order_ids(client, start, end, submitted_from=submitted_from)
    with ThreadPoolExecutor(READERS, thread_name_prefix="xc-orders") as pool:
        for order in pool.map(read, ids):
            if order is not None:
                yield order


def with_sales_activities(
    client: XCClient, orders: Iterable[dict[str, Any]], batch: int = 200
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each order with its sales activities, read a few orders at a time."""
    from stripe_sitecore.store.reports import batched

    def activities(order: dict[str, Any]) -> list[dict[str, Any]]:
        return client.order_sales_activities(order["Id"])

    with ThreadPoolExecutor(READERS, thread_name_prefix="xc-activities") as pool:
        for chunk in batched(orders, batch):
            yield from zip(chunk, pool.map(activities, chunk), strict=True)


def payment_facts(activities: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """(settled, refunded) minor units of the integration's federated payment, from the sales
    activities: settled charges of a payment whose id is a PaymentIntent's; refunds are the
    negative activities whose transaction is not a charge (a void repeats the charge's)."""
    charges: list[tuple[dict[str, Any], Any]] = []
    negatives: list[tuple[dict[str, Any], Any]] = []
    for activity in activities:
        try:
            money = parse_money(activity.get("ActivityAmount"), "ActivityAmount")
        except ValueError:
            continue
        payment = (components(activity, FEDERATED_PAYMENT) or [{}])[0]
        if money.amount > 0:
            charges.append((activity, payment))
        elif money.amount < 0:
            negatives.append((activity, payment))
    charge_ids = {p.get("TransactionId") for _, p in charges} - {None, ""}
    settled = refunded = 0
    for activity, payment in charges:
        ours = str(payment.get("Id") or "").startswith(PAYMENT_INTENT_PREFIX)
        if ours and activity.get("PaymentStatus") in SETTLED_STATUSES:
            money = parse_money(activity["ActivityAmount"], "ActivityAmount")
            settled += to_minor_units_or_none(money.amount, money.currency) or 0
    for activity, payment in negatives:
        if payment.get("TransactionId") in charge_ids:
            continue  # a void: the payment was released, nothing was refunded
        if not str(payment.get("Id") or "").startswith(PAYMENT_INTENT_PREFIX):
            continue
        money = parse_money(activity["ActivityAmount"], "ActivityAmount")
        refunded += to_minor_units_or_none(-money.amount, money.currency) or 0
    return settled, refunded


def _instant(value: Any) -> datetime | None:
    return parse_instant(value, "date") if value else None


def order_row(
    order: dict[str, Any],
    activities: list[dict[str, Any]] | None,
    day: date,
    settings: ReconciliationSettings,
    stripe: dict[str, Any],
) -> dict[str, Any]:
    """An XC order (with the integration's component ``stripe``) as a ``recon_stage_orders``
    row."""
    grand = (order.get("Totals") or {}).get("GrandTotal") or {}
    currency = grand.get("CurrencyCode") if isinstance(grand.get("CurrencyCode"), str) else None
    amount = grand.get("Amount")
    payment_status = stripe.get("PaymentStatus") or None
    settled, refunded_minor = payment_facts(activities or [])
    status = order.get("Status")
    others = [
        p
        for p in federated_payments(order)
        if not str(p.get("Id") or "").startswith(PAYMENT_INTENT_PREFIX)
    ]
    # Paid at checkout by another provider: its name, for the exempt_payment_methods setting.
    method = (others[0].get("PaymentMethod") or {}).get("Name") if others else None
    return {
        "day": day,
        "order_id": order["Id"],
        "found": True,
        "currency": currency.lower() if currency else None,
        "total_minor": to_minor_units_or_none(amount, currency),
        "total": None if amount is None else str(Decimal(amount)),
        "status": REPORT_STATUSES.get(status, status),
        "payment_status": payment_status,
        "payment_method": method or None,
        "payment_intent_id": stripe.get("PaymentIntentId") or None,
        "paid": payment_status in settings.paid_statuses or settled > 0,
        "refunded": payment_status in settings.refunded_statuses or refunded_minor > 0,
        "refunded_minor": refunded_minor,
        "date_submitted": _instant(order.get("OrderPlacedDate")),
        "date_canceled": _instant(order.get("DateUpdated")) if status == "Cancelled" else None,
        "last_updated": _instant(order.get("DateUpdated")),
    }
