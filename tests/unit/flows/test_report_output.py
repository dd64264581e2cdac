"""What the reports show: exact money, notes, files written whole, self-contained HTML, alerts."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from decimal import Decimal

from stripe_sitecore.alerting import data as alerts
from stripe_sitecore.flows.reconciliation import threshold_alerts
from stripe_sitecore.reports import render
from stripe_sitecore.reports.period import ReportPeriod
from stripe_sitecore.reports.settings import ReconciliationSettings, Threshold

DAY = date(2026, 11, 10)


def item(**values):
    base = dict.fromkeys(render.ITEM_COLUMNS)
    base.update(day=DAY, kind="charge", category="matched")
    base.update(values)
    return base


def test_money_is_shown_exactly_in_each_currencys_minor_unit():
    assert render.money(12350, "kwd") == "12.350"
    assert render.money(5400, "jpy") == "5400"
    assert render.money(-7000, "usd") == "-70.00"
    assert render.money(None, "usd") == ""
    assert render.money_label(4999, "usd") == "49.99 USD"


def test_each_discrepancy_says_why_in_one_line():
    mismatch = item(
        category="amount_mismatch",
        stripe_amount=4999,
        stripe_currency="usd",
        sitecore_amount=5000,
        sitecore_currency="usd",
    )
    assert render.note(mismatch) == "Stripe captured 49.99 USD; the order total is 50.00 USD"
    stuck = item(category="paid_in_stripe_not_sitecore", sitecore_status="AwaitingPayment")
    assert "ledger: no ledger link" in render.note(stuck)
    assert "does not have" in render.note(item(category="orphan_charge", order_id="o-x"))
    row = render.item_csv_row(mismatch)
    assert row[render.ITEM_COLUMNS.index("stripe_amount")] == "49.99"
    assert row[render.ITEM_COLUMNS.index("day")] == "2026-11-10"


def test_files_are_replaced_whole(tmp_path):
    target = tmp_path / "reports" / "day.csv"
    assert render.write_csv(target, ["a", "b"], iter([["1", "2"], ["3", "4"]])) == 2
    render.write_csv(target, ["a", "b"], iter([["5", "6"]]))
    assert target.read_text().splitlines() == ["a,b", "5,6"]
    assert [p.name for p in target.parent.iterdir()] == ["day.csv"]


def test_the_html_summary_is_self_contained_and_escapes_what_it_shows():
    period = ReportPeriod(DAY)
    html = render.reconciliation_html(
        period=period,
        counts={"orphan_charge": 1, "matched": 3},
        totals=[
            dict(
                day=DAY,
                currency="usd",
                charges=4,
                gross=10000,
                refunds=-500,
                disputes=0,
                other=0,
                fees=320,
                net=9180,
                payouts=0,
                payouts_amount=0,
                payout_transactions=0,
            )
        ],  # fmt: skip
        payouts=[],
        items=[item(category="orphan_charge", order_id="<script>alert(1)</script>")],
        trend=[{"day": DAY, "counts": {"orphan_charge": 1}}],
        trend_days_shown=14,
        generated_at=datetime(2026, 11, 11, 2, 30, tzinfo=UTC),
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "100.00" in html and "-5.00" in html and "91.80" in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert svg.count("<rect") == 2  # one bar, one legend entry
    assert "11-10" in svg and "10-28" in svg  # fourteen days, the empty ones too
    assert 'src="' not in html and "<link" not in html


def test_a_data_alert_is_a_warning_with_a_prefix_and_a_value(caplog):
    with caplog.at_level(logging.WARNING, logger="stripe_sitecore.alerting.data"):
        alert = alerts.data_alert("reconciliation.orphan_charge", "2 orphans", {"count": 2})
    assert caplog.records[0].levelno == logging.WARNING
    assert caplog.records[0].getMessage().startswith("DATA ALERT [reconciliation.orphan_charge]")
    assert json.loads(json.dumps(alert.as_dict()))["details"] == {"count": 2}


def test_thresholds_alert_above_the_count_or_a_currencys_amount_only():
    settings = ReconciliationSettings(
        thresholds={
            "amount_mismatch": Threshold(count=2),
            "orphan_charge": Threshold(amount={"USD": Decimal("100.00")}),
        }
    )
    counts = {"amount_mismatch": 2, "orphan_charge": 1, "disputed": 9}
    amounts = {"orphan_charge": {"usd": 10000, "eur": 99999}}
    assert threshold_alerts(ReportPeriod(DAY), counts, amounts, settings) == []

    counts["amount_mismatch"] = 3
    amounts["orphan_charge"]["usd"] = 10001
    raised = threshold_alerts(ReportPeriod(DAY), counts, amounts, settings)
    assert [a.kind for a in raised] == [
        "reconciliation.amount_mismatch",
        "reconciliation.orphan_charge",
    ]
    assert "100.01 USD > 100.00" in raised[1].message
    assert raised[1].details["amounts"] == {"eur": "999.99", "usd": "100.01"}
