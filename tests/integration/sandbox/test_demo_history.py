"""The demo history `make run` seeds: past days processed by the flows, then the two report DAGs
(dag.test, as ``airflow dags test`` in scripts/run-local.sh) for each day; every planted problem
must be in the report data, the clean orders matched, and the invalid order a dead letter."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sandbox.demo_history import CURRENCIES, seed_history
from sandbox.erp_sim import DEFAULT_STOCK
from stripe_sitecore.store import StateStore
from stripe_sitecore.store import reports as repo
from tests.harness.airflow import run_dag
from tests.harness.services import connection_env

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def seeded(sandbox, tmp_path_factory):
    sandbox.reset()
    work = tmp_path_factory.mktemp("demo-history")
    url = f"sqlite:///{work / 'state.db'}"
    store = StateStore.from_url(url)
    store.migrate()
    history = seed_history(sandbox.stripe_url, sandbox.ordercloud_url, sandbox.erp_url, store)
    reports = work / "reports"
    env = {
        **connection_env(sandbox, url),
        "AIRFLOW_VAR_STRIPE_SITECORE_RECONCILIATION": json.dumps({"reports_dir": str(reports)}),
        "AIRFLOW_VAR_STRIPE_SITECORE_FRAUD_REPORT": json.dumps({"reports_dir": str(reports)}),
    }
    yield sandbox, store, history, env, reports
    store.dispose()


@pytest.fixture(scope="module")
def reported(seeded, airflow_db):
    sandbox, store, history, env, reports = seeded
    for day in history.days:
        # The daily interval ends at 02:00 the next day: that run reports ``day``.
        logical_date = datetime(day.year, day.month, day.day, 2, tzinfo=UTC) + timedelta(days=1)
        for dag_id in ("reconciliation_daily", "fraud_report_daily"):
            result = run_dag(dag_id, logical_date, env)
            assert result.state == "success", (dag_id, day, result.task_states)
    return seeded


def items_by_day(store, history) -> dict:
    with store.engine.connect() as conn:
        return {day: list(repo.stream_items(conn, day)) for day in history.days}


def test_the_history_is_believable_and_left_the_live_clock(seeded):
    sandbox, store, history, _, _ = seeded
    today = datetime.now(UTC).date()
    assert history.days == [today - timedelta(days=n) for n in (3, 2, 1)]
    assert len(history.orders) == 19  # six a day and the invalid one
    # The simulators are back on live time, for the demo traffic and the walkthrough.
    for url in (sandbox.stripe_url, sandbox.ordercloud_url, sandbox.erp_url):
        clock = httpx.get(f"{url}/_sandbox/clock").json()
        assert clock["frozen"] is False and abs(clock["offset_seconds"]) < 5
    # The ERP got every paid order in full (history had stock), and stock is as configured again.
    with store.begin() as tx:
        assert [d["rule"] for d in tx.open_dead_letters()] == ["money.exact_minor_units"]
    stock = httpx.get(f"{sandbox.erp_url}/_sandbox/erp/stock").json()["stock"]
    for sku, (on_hand, discontinued) in DEFAULT_STOCK.items():
        assert (stock[sku]["available"], stock[sku]["discontinued"]) == (on_hand, discontinued)
    assert sum(entry["reserved"] for entry in stock.values()) > 0  # the history's orders


def test_every_planted_problem_is_in_the_reports(reported):
    sandbox, store, history, _, reports = reported
    items = items_by_day(store, history)
    with store.engine.connect() as conn:
        flags = {day: repo.flags(conn, day) for day in history.days}
        totals = {day: repo.totals(conn, day) for day in history.days}
    assert {p.problem for p in history.planted} == {
        "amount mismatch",
        "payment in Stripe, not in Sitecore",
        "refund on one side only",
        "early fraud warning",
        "invalid order",
    }
    for planted in history.planted:
        where, _, what = planted.shows_as.partition(":")
        if where == "reconciliation":
            kind, category = what.split(":")
            found = {
                (i["kind"], i["category"])
                for i in items[planted.day]
                if i["order_id"] == planted.order_id
            }
            assert (kind, category) in found, (planted, found)
        elif where == "fraud":
            rules = {f["rule_id"] for f in flags[planted.day] if f["subject"] == planted.order_id}
            assert what in rules, (planted, rules)
        else:
            with store.begin() as tx:
                [dead] = tx.open_dead_letters(what)
            assert dead["record_key"] == planted.order_id
            assert "19.995 EUR" in dead["reason"]
            # Submitted in the day and never given a PaymentIntent: reconciliation says so too.
            assert ("order", planted.order_id, "no_payment_intent") in {
                (i["kind"], i["order_id"], i["category"]) for i in items[planted.day]
            }

    # Nothing else is wrong: every other charge and refund of the history matches.
    planted_items = {
        (p.order_id, *p.shows_as.split(":")[1:])
        for p in history.planted
        if p.shows_as.startswith("reconciliation")
    }
    other = Counter(
        i["category"]
        for day in history.days
        for i in items[day]
        if (i["order_id"], i["kind"], i["category"]) not in planted_items
        and i["kind"] in {"charge", "refund"}
    )
    assert set(other) == {"matched"}, other
    assert other["matched"] >= 15
    # A chargeback on the last day; payouts with their fees; money in every shop currency.
    last = history.days[-1]
    assert any(i["kind"] == "dispute" and i["category"] == "disputed" for i in items[last])
    assert any(i["kind"] == "payout" and i["category"] == "matched" for i in items[last])
    currencies = {t["currency"] for day in history.days for t in totals[day]}
    assert currencies == {c.lower() for c in CURRENCIES}
    assert all(t["fees"] != 0 for day in history.days for t in totals[day] if t["gross"])
    for day in history.days:
        assert (reports / "reconciliation" / f"{day}.html").is_file()
        assert (reports / "fraud" / f"{day}.csv").is_file()
