"""The reports page's charts and the "Start here" page, from report rows planted in a SQLite
state DB: the numbers each chart draws, the exact money labels, what a user without a report's
DAG does not get, and a page that fits a phone (no fixed-width SVG, a viewport)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from stripe_sitecore.store import StateStore, models
from stripe_sitecore.ui import charts
from tests.unit.ui.test_ui_app import FakeAuth, make_client

DAYS = [date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)]
COUNTS = [
    {"matched": 12, "amount_mismatch": 1, "awaiting_payment": 2},
    {"matched": 9, "paid_in_stripe_not_sitecore": 1, "refunded_in_stripe_only": 1},
    {"matched": 11, "disputed": 1, "no_payment_intent": 1},
]


@pytest.fixture
def store(tmp_path):
    store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    now = datetime(2026, 11, 21, 3, tzinfo=UTC)
    with store.engine.begin() as conn:
        for day, counts in zip(DAYS, COUNTS, strict=True):
            for report in ("reconciliation", "fraud"):
                conn.execute(
                    sa.insert(models.report_runs).values(
                        report=report, day=day, timezone="UTC", window_start=now,
                        window_end=now, status="published",
                        counts=counts if report == "reconciliation" else {},
                        settings={}, started_at=now, updated_at=now,
                    )
                )  # fmt: skip
            for currency, gross, fees in (("usd", 12345, -389), ("kwd", 12350, -370)):
                conn.execute(
                    sa.insert(models.recon_totals).values(
                        day=day, currency=currency, charges=2, gross=gross, refunds=-1000,
                        disputes=0, other=0, fees=fees, net=gross - 1000 + fees, payouts=0,
                        payouts_amount=0, payout_transactions=0,
                    )
                )  # fmt: skip
        for day, subject, rule, severity in (
            (DAYS[2], "o-1", "early_fraud_warning", "high"),
            (DAYS[2], "o-2", "open_dispute", "high"),
            (DAYS[1], "o-3", "velocity_email", "medium"),
            (DAYS[2], "o-4", "velocity_email", "medium"),
            (DAYS[0], "o-5", "large_first_order", "low"),
        ):
            conn.execute(
                sa.insert(models.fraud_flags).values(
                    day=day, subject=subject, rule_id=rule, severity=severity, order_id=subject,
                    evidence={}, occurred_at=now,
                )
            )  # fmt: skip
        conn.execute(
            sa.insert(models.recon_items).values(
                day=DAYS[0], item_key="charge:ch_1", kind="charge", category="amount_mismatch",
                order_id="o-9",
            )
        )  # fmt: skip
    yield store
    store.dispose()


def test_the_chart_data_is_what_the_reports_stored(store):
    with store.engine.connect() as conn:
        data = charts.dashboard(conn)
    assert [(d.day, d.matched, d.discrepancies) for d in data["recon_days"]] == [
        (DAYS[0], 12, 1),  # awaiting_payment is not a discrepancy
        (DAYS[1], 9, 2),
        (DAYS[2], 11, 2),  # disputed and no_payment_intent are
    ]
    money = {c.currency: c for c in data["currencies"]}
    assert money["usd"].gross == 3 * 12345 and money["usd"].text("gross") == "370.35"
    assert money["kwd"].text("net") == "32.940"  # (12.350 - 1.000 - 0.370) x 3, exact
    assert money["kwd"].text("fees") == "-1.110"
    assert [(r.rule_id, r.severity, r.flags) for r in data["rules"]] == [
        ("early_fraud_warning", "high", 1),
        ("open_dispute", "high", 1),
        ("velocity_email", "medium", 2),
        ("large_first_order", "low", 1),
    ]
    # The SVG draws those numbers: one bar per day and series, with its value.
    svg = str(data["recon_chart"])
    bars = re.findall(r'data-day="([\d-]+)" data-series="(\w+)" data-value="(\d+)"', svg)
    assert ("2026-11-19", "discrepancies", "2") in bars and ("2026-11-18", "matched", "12") in bars
    assert len(bars) == 6
    assert 'data-series="net" data-value="32940"' in str(data["money_chart"])
    assert "velocity_email (2)" in str(data["fraud_chart"])


def test_only_the_newest_days_are_charted(store):
    with store.engine.connect() as conn:
        assert charts.last_days(conn, "reconciliation", 2) == DAYS[1:]
        assert [d.day for d in charts.reconciliation_days(conn, DAYS[1:])] == DAYS[1:]


def test_the_reports_page_shows_the_charts_readable_on_a_phone(store, tmp_path):
    client = make_client(store, tmp_path)
    page = client.get("/reports")
    assert page.status_code == 200
    html = page.text
    assert 'name="viewport" content="width=device-width' in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" viewBox=') == 3
    # Charts scale to the screen: a viewBox, no fixed width; nothing fetched, no script.
    assert not re.search(r"<svg[^>]* width=", html)
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert 'id="recon-charts"' in html and 'id="fraud-charts"' in html
    assert "Reconciliation, 2026-11-18 – 2026-11-20" in html
    assert '<tr data-rule="velocity_email">' in html and "o-3, o-4" in html


def test_a_user_without_the_fraud_dag_gets_no_fraud_chart(store, tmp_path):
    client = make_client(store, tmp_path, authorize=FakeAuth(refuse={"fraud_report_daily"}))
    html = client.get("/reports").text
    assert 'id="recon-charts"' in html and 'id="fraud-charts"' not in html
    assert "velocity_email" not in html


def test_the_reports_page_without_any_report_has_no_charts(tmp_path):
    empty = StateStore.from_url(f"sqlite:///{tmp_path / 'empty.db'}")
    empty.migrate()
    html = make_client(empty, tmp_path).get("/reports").text
    assert "<svg" not in html and "No days reported yet." in html
    empty.dispose()


def test_start_here_walks_through_seven_steps_and_names_what_was_found(store, tmp_path):
    auth = FakeAuth()
    html = make_client(store, tmp_path, authorize=auth).get("/start").text
    assert auth.asked == ["sitecore_orders_to_stripe"]
    steps = re.findall(r'<li id="step-(\d)">', html)
    assert steps == [str(n) for n in range(1, 8)]
    assert html.count('class="where"') == 7 and html.count('class="expect"') == 7
    assert "python -m sandbox.demo_history order" in html
    assert 'href="/dags/dead_letter_replay"' in html
    # The planted amount mismatch is in the stored report: the page says where.
    assert "amount_mismatch on 2026-11-18" in html
    refused = make_client(store, tmp_path, authorize=FakeAuth(refuse={"sitecore_orders_to_stripe"}))
    assert refused.get("/start").status_code == 403
