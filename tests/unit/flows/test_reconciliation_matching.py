"""The matching SQL on hand-made staging rows (in-memory SQLite): the edges a sandbox day does
not reach."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from stripe_sitecore.reports import matching
from stripe_sitecore.reports.period import ReportPeriod
from stripe_sitecore.reports.settings import ReconciliationSettings
from stripe_sitecore.store import StateStore, models
from stripe_sitecore.store import reports as repo

DAY = date(2026, 11, 10)
PERIOD = ReportPeriod(DAY)
NOON = PERIOD.start + timedelta(hours=12)


@pytest.fixture
def store(tmp_path):
    state = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    state.migrate()
    yield state
    state.dispose()


def order(order_id, **values):
    row = {
        "day": DAY,
        "order_id": order_id,
        "found": True,
        "currency": "usd",
        "total_minor": 1000,
        "total": "10.00",
        "status": "Open",
        "payment_status": None,
        "payment_method": None,
        "payment_intent_id": None,
        "paid": False,
        "refunded": False,
        "refunded_minor": 0,
        "date_submitted": NOON,
        "date_canceled": None,
        "last_updated": NOON,
    }
    row.update(values)
    return row


def charge(charge_id, order_id, **values):
    row = {
        "day": DAY,
        "charge_id": charge_id,
        "payment_intent_id": f"pi_{order_id}",
        "order_id": order_id,
        "backend": "ordercloud",
        "customer_id": None,
        "status": "succeeded",
        "captured": True,
        "amount": 1000,
        "amount_captured": 1000,
        "amount_refunded": 0,
        "currency": "usd",
        "disputed": False,
        "created": NOON,
        "in_day": True,
    }
    row.update(values)
    return row


def classify(store, *, settings=None, **tables) -> set[tuple]:
    for name, rows in tables.items():
        repo.insert_rows(store, getattr(models, f"recon_stage_{name}"), rows)
    with store.engine.begin() as conn:
        matching.classify(
            conn, DAY, PERIOD.start, PERIOD.end, settings or ReconciliationSettings(), "ordercloud"
        )
        return {(i["kind"], i["order_id"], i["category"]) for i in repo.stream_items(conn, DAY)}


def test_another_backends_payments_and_purchase_orders_are_not_this_reconciliations(store):
    found = classify(
        store,
        charges=[charge("ch_xc", "xc-1", backend="xc")],
        orders=[order("o-po", payment_method="PurchaseOrder", paid=True)],
    )
    assert found == set()


def test_missing_order_fields_count_as_unknown_not_as_a_reason_to_drop_the_order(store):
    found = classify(
        store,
        orders=[order("o-bare", status=None, currency=None, total_minor=None, total=None)],
    )
    assert found == {("order", "o-bare", "no_payment_intent")}


def test_the_payment_intent_check_covers_each_order_on_exactly_one_day(store):
    grace = timedelta(minutes=120)
    found = classify(
        store,
        orders=[
            # Submitted late the day before: this day's run checks it.
            order("o-prev", date_submitted=PERIOD.start - grace),
            # Submitted inside the grace period before the end: the next day's run does.
            order("o-late", date_submitted=PERIOD.end - grace),
            order("o-early-enough", date_submitted=PERIOD.end - grace - timedelta(seconds=1)),
        ],
    )
    assert found == {
        ("order", "o-prev", "no_payment_intent"),
        ("order", "o-late", "awaiting_payment"),
        ("order", "o-early-enough", "no_payment_intent"),
    }


def test_a_failed_refund_sitecore_counts_is_one_discrepancy_not_two(store):
    refund = {
        "day": DAY,
        "refund_id": "re_1",
        "charge_id": "ch_1",
        "payment_intent_id": "pi_o1",
        "order_id": "o1",
        "backend": "ordercloud",
        "status": "failed",
        "amount": 1000,
        "currency": "usd",
        "created": NOON,
    }
    found = classify(
        store,
        charges=[charge("ch_1", "o1")],
        refunds=[refund],
        orders=[order("o1", paid=True, refunded=True, payment_status="Refunded")],
    )
    assert found == {
        ("charge", "o1", "matched"),
        ("refund", "o1", "refunded_in_sitecore_only"),
    }


def test_payouts_match_the_transactions_they_settled(store):
    def txn(txn_id, scope, amount, type_="charge"):
        return {
            "day": DAY, "scope": scope, "txn_id": txn_id, "type": type_,
            "reporting_category": type_, "source_id": None, "amount": amount, "fee": 0,
            "net": amount, "currency": "usd", "created": NOON,
        }  # fmt: skip

    def payout(payout_id, amount, status="paid"):
        return {
            "day": DAY, "payout_id": payout_id, "status": status, "amount": amount,
            "currency": "usd", "arrival_date": None, "reconciliation_status": None,
            "created": NOON,
        }  # fmt: skip

    found = classify(
        store,
        balance_transactions=[
            txn("t1", "po_ok", 700),
            txn("t2", "po_ok", 300),
            txn("t3", "po_ok", -1000, "payout"),
            txn("t4", "po_short", 500),
        ],
        payouts=[payout("po_ok", 1000), payout("po_short", 900), payout("po_wait", 10, "pending")],
    )
    assert found == {
        ("payout", None, "matched"),
        ("payout", None, "amount_mismatch"),
        ("payout", None, "payout_pending"),
    }
    with store.engine.connect() as conn:
        [usd] = repo.totals(conn, DAY)
    assert (usd["payouts"], usd["payouts_amount"], usd["payout_transactions"]) == (3, 1910, 3)


def test_classifying_again_replaces_the_days_items(store):
    first = classify(store, charges=[charge("ch_1", "o1")])
    assert first == {("charge", "o1", "orphan_charge")}
    second = classify(store, orders=[order("o1", paid=True, date_submitted=NOON)])
    assert second == {("charge", "o1", "matched")}


def test_timestamps_keep_their_instant_through_the_bulk_insert(store):
    instant = datetime(2026, 11, 10, 0, 0, tzinfo=UTC)
    repo.insert_rows(store, models.recon_stage_orders, [order("o1", date_submitted=instant)])
    with store.engine.connect() as conn:
        submitted = conn.scalar(
            models.recon_stage_orders.select()
            .with_only_columns(models.recon_stage_orders.c.date_submitted)
            .where(models.recon_stage_orders.c.date_submitted >= instant)
        )
    assert submitted == instant
