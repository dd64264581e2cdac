"""Reconciliation as SQL over the staged day: match Stripe objects to Sitecore orders and our
ledger, classify every item, total the money per currency.

All of it runs in the state database (``INSERT ... SELECT``), so a day of a million charges
never becomes a million Python objects. The statements are SQLAlchemy Core and run unchanged on
SQLite and PostgreSQL.

Matching keys: a Stripe object belongs to the order in its PaymentIntent's
``metadata.sitecore_order_id``; objects without it get the order our ledger linked to their
PaymentIntent (``order_links``). Items, one per:

- captured charge created in the day (``charge``): ``orphan_charge`` (no order, or one OrderCloud
  does not have), ``not_the_orders_payment_intent`` (its PaymentIntent names the order but is not
  the order's own: the ledger links another, or the payment flow held it for a person),
  ``currency_mismatch``, ``amount_mismatch`` (captured amount vs the order's
  total), ``paid_in_stripe_not_sitecore``, else ``matched``: the first that holds;
- refund created in the day (``refund``): ``refunded_in_stripe_only`` when Sitecore shows no
  refund, ``refunded_in_sitecore_only`` for a failed refund Sitecore counts, else ``matched``;
- dispute created in the day (``dispute``): ``disputed``;
- payout created in the day (``payout``): ``matched`` when the balance transactions it settled add
  up to its amount, else ``amount_mismatch``; ``payout_pending`` before it is paid;
- Sitecore order of the day (``order``): ``paid_in_sitecore_no_charge`` (paid there, no
  succeeded charge on any day), ``refunded_in_sitecore_only`` (refunded or canceled after payment
  there, not refunded in Stripe), ``no_payment_intent`` (submitted in ``[start - grace,
  end - grace)`` with no PaymentIntent anywhere); orders submitted in the day with no charge item
  are ``canceled``, ``matched`` (paid on another day) or ``awaiting_payment``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from stripe_sitecore.reports.settings import ReconciliationSettings
from stripe_sitecore.store import models
from stripe_sitecore.store.state import ERP_TOPIC

charges = models.recon_stage_charges
refunds = models.recon_stage_refunds
disputes = models.recon_stage_disputes
balance = models.recon_stage_balance_transactions
payouts = models.recon_stage_payouts
orders = models.recon_stage_orders
links = models.order_links
dead_letters = models.dead_letters
outbox = models.outbox
items = models.recon_items

SUCCESSFUL_REFUND = ("succeeded", "pending")
GROSS = ("charge",)
REFUNDS = ("refund", "refund_failure")
DISPUTES = ("dispute", "dispute_reversal")

ITEM_COLUMNS = [c.name for c in items.columns]


def _ours(table: sa.Table, backend: str) -> sa.ColumnElement[bool]:
    """Objects another backend's integration created are not this reconciliation's."""
    return sa.or_(table.c.backend.is_(None), table.c.backend == backend)


def _erp_queued(order_id: sa.ColumnElement, backend: str) -> sa.ColumnElement[bool]:
    return sa.exists().where(
        outbox.c.topic == ERP_TOPIC, outbox.c.message_key == sa.literal(f"{backend}:") + order_id
    )


def _text(value: str) -> sa.ColumnElement[str]:
    return sa.literal(value, sa.String)


def _null(column: str) -> sa.ColumnElement:
    """A NULL of the item column's type (PostgreSQL types a bare NULL in a subquery as text)."""
    return sa.cast(sa.null(), items.c[column].type)


def _insert_items(conn: sa.Connection, select: sa.Select) -> int:
    return conn.execute(items.insert().from_select(ITEM_COLUMNS, select)).rowcount


# --- steps -----------------------------------------------------------------------------------


def link_orders(conn: sa.Connection, day: date, backend: str) -> None:
    """Give objects without an order id in their metadata the order our ledger linked."""
    for table in (charges, refunds, disputes):
        linked = (
            sa.select(links.c.order_id)
            .where(
                links.c.backend == backend, links.c.payment_intent_id == table.c.payment_intent_id
            )
            .scalar_subquery()
        )
        conn.execute(
            sa.update(table)
            .where(
                table.c.day == day,
                table.c.order_id.is_(None),
                table.c.payment_intent_id.is_not(None),
            )
            .values(order_id=linked)
        )


def referenced_orders_missing(conn: sa.Connection, day: date, backend: str) -> list[str]:
    """Order ids the day's Stripe objects name that the Sitecore read did not bring."""
    named = sa.union(
        *(
            sa.select(t.c.order_id.label("order_id")).where(
                t.c.day == day, t.c.order_id.is_not(None), _ours(t, backend)
            )
            for t in (charges, refunds, disputes)
        )
    ).subquery()
    staged = sa.exists().where(orders.c.day == day, orders.c.order_id == named.c.order_id)
    return sorted(conn.scalars(sa.select(named.c.order_id).where(~staged)))


def orders_without_charge(conn: sa.Connection, day: date, backend: str) -> list[tuple[str, str]]:
    """``(order id, PaymentIntent id)`` of orders Sitecore counts as paid or refunded with no
    staged charge: their charge may be from another day, so it is looked up."""
    has_charge = sa.exists().where(charges.c.day == day, charges.c.order_id == orders.c.order_id)
    payment_intent = sa.func.coalesce(orders.c.payment_intent_id, links.c.payment_intent_id)
    rows = conn.execute(
        sa.select(orders.c.order_id, payment_intent)
        .select_from(
            orders.outerjoin(
                links, sa.and_(links.c.backend == backend, links.c.order_id == orders.c.order_id)
            )
        )
        .where(
            orders.c.day == day,
            orders.c.found.is_(True),
            sa.or_(orders.c.paid.is_(True), orders.c.refunded.is_(True)),
            payment_intent.is_not(None),
            ~has_charge,
        )
        .order_by(orders.c.order_id)
    )
    return [(order_id, pi) for order_id, pi in rows]


def classify(
    conn: sa.Connection,
    day: date,
    start: datetime,
    end: datetime,
    settings: ReconciliationSettings,
    backend: str,
) -> dict[str, int]:
    """Replace the day's items and totals; returns the item count per category."""
    from stripe_sitecore.store import reports as repo

    repo.clear_results(conn, day)
    link_orders(conn, day, backend)
    _charge_items(conn, day, backend)
    _refund_items(conn, day, backend)
    _dispute_items(conn, day, backend)
    _payout_items(conn, day)
    _order_items(conn, day, start, end, settings, backend)
    _totals(conn, day)
    return repo.category_counts(conn, day)


def _not_the_orders(c: sa.Table, ledger: sa.Table) -> sa.ColumnElement[bool]:
    """The charge's PaymentIntent names the order but is not the order's own: the ledger links
    another one, or the payment flow held it for a person (see flows.payments_to_sitecore)."""
    held = sa.exists().where(
        dead_letters.c.source == "stripe.payment_intents",
        dead_letters.c.record_key == c.c.payment_intent_id,
        dead_letters.c.rule == "payment.not_the_orders_payment_intent",
        dead_letters.c.status == "open",
    )
    other_link = sa.and_(
        ledger.c.payment_intent_id.is_not(None),
        ledger.c.payment_intent_id != c.c.payment_intent_id,
    )
    return sa.or_(other_link, held)


def _charge_items(conn: sa.Connection, day: date, backend: str) -> int:
    c, o, ledger = charges, orders, links
    category = sa.case(
        (sa.or_(o.c.order_id.is_(None), o.c.found.is_(False)), _text("orphan_charge")),
        (_not_the_orders(c, ledger), _text("not_the_orders_payment_intent")),
        (c.c.currency != o.c.currency, _text("currency_mismatch")),
        (
            sa.or_(o.c.total_minor.is_(None), c.c.amount_captured != o.c.total_minor),
            _text("amount_mismatch"),
        ),
        (o.c.paid.is_(False), _text("paid_in_stripe_not_sitecore")),
        else_=_text("matched"),
    )
    select = (
        sa.select(
            c.c.day,
            _text("charge:") + c.c.charge_id,
            _text("charge"),
            category,
            c.c.order_id,
            c.c.payment_intent_id,
            c.c.charge_id,
            c.c.charge_id,
            c.c.currency,
            c.c.amount_captured,
            o.c.currency,
            o.c.total_minor,
            o.c.payment_status,
            c.c.status,
            ledger.c.state,
            _erp_queued(c.c.order_id, backend),
            c.c.created,
            _null("resolution"),
        )
        .select_from(
            c.outerjoin(o, sa.and_(o.c.day == c.c.day, o.c.order_id == c.c.order_id)).outerjoin(
                ledger, sa.and_(ledger.c.backend == backend, ledger.c.order_id == c.c.order_id)
            )
        )
        .where(
            c.c.day == day,
            c.c.in_day.is_(True),
            c.c.status == "succeeded",
            c.c.captured.is_(True),
            _ours(c, backend),
        )
    )
    return _insert_items(conn, select)


def _refund_items(conn: sa.Connection, day: date, backend: str) -> int:
    r, o, ledger = refunds, orders, links
    sitecore_refunded = sa.func.coalesce(o.c.refunded, sa.false())
    category = sa.case(
        (
            r.c.status.in_(SUCCESSFUL_REFUND),
            sa.case(
                (sitecore_refunded.is_(True), _text("matched")),
                else_=_text("refunded_in_stripe_only"),
            ),
        ),
        (sitecore_refunded.is_(True), _text("refunded_in_sitecore_only")),
        else_=_text("matched"),
    )
    select = (
        sa.select(
            r.c.day,
            _text("refund:") + r.c.refund_id,
            _text("refund"),
            category,
            r.c.order_id,
            r.c.payment_intent_id,
            r.c.charge_id,
            r.c.refund_id,
            r.c.currency,
            r.c.amount,
            o.c.currency,
            o.c.refunded_minor,
            o.c.payment_status,
            r.c.status,
            ledger.c.state,
            _erp_queued(r.c.order_id, backend),
            r.c.created,
            _null("resolution"),
        )
        .select_from(
            r.outerjoin(o, sa.and_(o.c.day == r.c.day, o.c.order_id == r.c.order_id)).outerjoin(
                ledger, sa.and_(ledger.c.backend == backend, ledger.c.order_id == r.c.order_id)
            )
        )
        .where(r.c.day == day, _ours(r, backend))
    )
    return _insert_items(conn, select)


def _dispute_items(conn: sa.Connection, day: date, backend: str) -> int:
    d, o, ledger = disputes, orders, links
    select = (
        sa.select(
            d.c.day,
            _text("dispute:") + d.c.dispute_id,
            _text("dispute"),
            _text("disputed"),
            d.c.order_id,
            d.c.payment_intent_id,
            d.c.charge_id,
            d.c.dispute_id,
            d.c.currency,
            d.c.amount,
            o.c.currency,
            o.c.total_minor,
            o.c.payment_status,
            d.c.status,
            ledger.c.state,
            _erp_queued(d.c.order_id, backend),
            d.c.created,
            _null("resolution"),
        )
        .select_from(
            d.outerjoin(o, sa.and_(o.c.day == d.c.day, o.c.order_id == d.c.order_id)).outerjoin(
                ledger, sa.and_(ledger.c.backend == backend, ledger.c.order_id == d.c.order_id)
            )
        )
        .where(d.c.day == day, _ours(d, backend))
    )
    return _insert_items(conn, select)


def payout_settled(payout_id: sa.ColumnElement, day: date) -> sa.ScalarSelect:
    """The net of the balance transactions a payout settled (its own withdrawal left out)."""
    return (
        sa.select(sa.func.coalesce(sa.func.sum(balance.c.net), 0))
        .where(balance.c.day == day, balance.c.scope == payout_id, balance.c.type != "payout")
        .scalar_subquery()
    )


def _payout_items(conn: sa.Connection, day: date) -> int:
    p = payouts
    category = sa.case(
        (p.c.status != "paid", _text("payout_pending")),
        (payout_settled(p.c.payout_id, day) == p.c.amount, _text("matched")),
        else_=_text("amount_mismatch"),
    )
    select = sa.select(
        p.c.day,
        _text("payout:") + p.c.payout_id,
        _text("payout"),
        category,
        _null("order_id"),
        _null("payment_intent_id"),
        _null("charge_id"),
        p.c.payout_id,
        p.c.currency,
        p.c.amount,
        _null("sitecore_currency"),
        _null("sitecore_amount"),
        _null("sitecore_status"),
        p.c.status,
        _null("ledger_state"),
        _null("erp_queued"),
        p.c.created,
        _null("resolution"),
    ).where(p.c.day == day)
    return _insert_items(conn, select)


def _flag(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.max(sa.case((condition, 1), else_=0))


def _order_items(
    conn: sa.Connection,
    day: date,
    start: datetime,
    end: datetime,
    s: ReconciliationSettings,
    backend: str,
) -> int:
    o, ledger = orders, links
    grace = timedelta(minutes=s.grace_period_minutes)

    # What Stripe shows per order, in one pass over the day's charges and refunds each, then
    # joined: a million orders with several correlated lookups each would cost several times
    # more.
    succeeded = sa.and_(charges.c.status == "succeeded", charges.c.captured.is_(True))
    per_order_charges = (
        sa.select(
            charges.c.order_id.label("order_id"),
            _flag(succeeded).label("any_success"),
            _flag(sa.and_(succeeded, charges.c.in_day.is_(True))).label("day_success"),
            _flag(charges.c.amount_refunded > 0).label("refunded"),
        )
        .where(charges.c.day == day, charges.c.order_id.is_not(None))
        .group_by(charges.c.order_id)
        .subquery("stripe_charges")
    )
    per_order_refunds = (
        sa.select(
            refunds.c.order_id.label("order_id"),
            _flag(refunds.c.status.in_(SUCCESSFUL_REFUND)).label("refunded"),
        )
        .where(refunds.c.day == day, refunds.c.order_id.is_not(None))
        .group_by(refunds.c.order_id)
        .subquery("stripe_refunds")
    )
    sc, sr = per_order_charges, per_order_refunds
    any_success = sa.func.coalesce(sc.c.any_success, 0) == 1
    day_success = sa.func.coalesce(sc.c.day_success, 0) == 1
    stripe_refunded = sa.or_(
        sa.func.coalesce(sc.c.refunded, 0) == 1, sa.func.coalesce(sr.c.refunded, 0) == 1
    )
    any_refund = sr.c.order_id.is_not(None)
    has_payment_intent = sa.or_(
        o.c.payment_intent_id.is_not(None),
        ledger.c.payment_intent_id.is_not(None),
        sc.c.order_id.is_not(None),
    )
    # coalesce: a NULL in a NOT would otherwise drop the row instead of counting as false.
    canceled = sa.or_(
        sa.func.coalesce(o.c.status, "") == "Canceled",
        sa.func.coalesce(o.c.payment_status, "").in_(s.canceled_statuses),
    )
    exempt = sa.or_(
        sa.func.coalesce(o.c.payment_method, "").in_(s.exempt_payment_methods),
        sa.func.coalesce(o.c.total_minor, 1) <= 0,
    )
    submitted_in_day = sa.and_(o.c.date_submitted >= start, o.c.date_submitted < end)
    due_payment_intent = sa.and_(
        o.c.date_submitted >= start - grace, o.c.date_submitted < end - grace
    )
    paid, refunded = o.c.paid.is_(True), o.c.refunded.is_(True)
    category = sa.case(
        (sa.and_(paid, ~any_success), _text("paid_in_sitecore_no_charge")),
        (
            sa.and_(
                sa.or_(refunded, sa.and_(canceled, paid)),
                any_success,
                ~stripe_refunded,
                ~any_refund,
            ),
            _text("refunded_in_sitecore_only"),
        ),
        (sa.and_(due_payment_intent, ~has_payment_intent, ~canceled), _text("no_payment_intent")),
        (sa.and_(submitted_in_day, ~day_success, canceled), _text("canceled")),
        (sa.and_(submitted_in_day, ~day_success, paid), _text("matched")),
        (sa.and_(submitted_in_day, ~day_success), _text("awaiting_payment")),
        else_=_null("category"),
    )
    classified = (
        sa.select(
            o.c.day.label("day"),
            o.c.order_id.label("order_id"),
            category.label("category"),
            sa.func.coalesce(o.c.payment_intent_id, ledger.c.payment_intent_id).label(
                "payment_intent_id"
            ),
            o.c.currency.label("currency"),
            o.c.total_minor.label("total_minor"),
            o.c.payment_status.label("payment_status"),
            ledger.c.state.label("ledger_state"),
            o.c.date_submitted.label("date_submitted"),
        )
        .select_from(
            o.outerjoin(
                ledger, sa.and_(ledger.c.backend == backend, ledger.c.order_id == o.c.order_id)
            )
            .outerjoin(sc, sc.c.order_id == o.c.order_id)
            .outerjoin(sr, sr.c.order_id == o.c.order_id)
        )
        .where(o.c.day == day, o.c.found.is_(True), ~exempt)
        .subquery("classified")
    )
    k = classified.c
    select = sa.select(
        k.day,
        _text("order:") + k.order_id,
        _text("order"),
        k.category,
        k.order_id,
        k.payment_intent_id,
        _null("charge_id"),
        k.order_id,
        _null("stripe_currency"),
        _null("stripe_amount"),
        k.currency,
        k.total_minor,
        k.payment_status,
        _null("stripe_status"),
        k.ledger_state,
        _erp_queued(k.order_id, backend),
        k.date_submitted,
        _null("resolution"),
    ).where(k.category.is_not(None))
    # The ERP lookup runs for the items only, not for every order of the day.
    return _insert_items(conn, select)


def _sum_where(column: sa.Column, condition: sa.ColumnElement[bool]) -> sa.ColumnElement:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, column), else_=0)), 0)


def _totals(conn: sa.Connection, day: date) -> None:
    b = balance
    category = b.c.reporting_category
    not_payout = b.c.type != "payout"
    known = GROSS + REFUNDS + DISPUTES
    rows: dict[str, dict[str, Any]] = {}

    def row(currency: str) -> dict[str, Any]:
        return rows.setdefault(
            currency,
            dict(
                day=day,
                currency=currency,
                charges=0,
                gross=0,
                refunds=0,
                disputes=0,
                other=0,
                fees=0,
                net=0,
                payouts=0,
                payouts_amount=0,
                payout_transactions=0,
            ),
        )

    money = conn.execute(
        sa.select(
            b.c.currency,
            sa.func.coalesce(sa.func.sum(sa.case((category.in_(GROSS), 1), else_=0)), 0),
            _sum_where(b.c.amount, category.in_(GROSS)),
            _sum_where(b.c.amount, category.in_(REFUNDS)),
            _sum_where(b.c.amount, category.in_(DISPUTES)),
            _sum_where(b.c.amount, sa.and_(~category.in_(known), not_payout)),
            _sum_where(b.c.fee, not_payout),
            _sum_where(b.c.net, not_payout),
        )
        .where(b.c.day == day, b.c.scope == "day")
        .group_by(b.c.currency)
    )
    for currency, *values in money:
        names = ("charges", "gross", "refunds", "disputes", "other", "fees", "net")
        row(currency).update({name: int(value) for name, value in zip(names, values, strict=True)})

    settled = (
        sa.select(sa.func.count())
        .where(
            balance.c.day == day, balance.c.scope == payouts.c.payout_id, balance.c.type != "payout"
        )
        .scalar_subquery()
    )
    paid_out = conn.execute(
        sa.select(
            payouts.c.currency,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(payouts.c.amount), 0),
            sa.func.coalesce(sa.func.sum(settled), 0),
        )
        .where(payouts.c.day == day)
        .group_by(payouts.c.currency)
    )
    for currency, count, amount, transactions in paid_out:
        row(currency).update(
            payouts=int(count), payouts_amount=int(amount), payout_transactions=int(transactions)
        )
    if rows:
        conn.execute(models.recon_totals.insert(), list(rows.values()))
