"""The two report DAGs, run by Airflow (dag.test) against the planted sandbox day."""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import pytest

from stripe_sitecore.store import StateStore
from stripe_sitecore.store import reports as repo
from tests.harness.airflow import run_dag
from tests.harness.services import connection_env
from tests.integration.flows import reports_scenario as scenario

DAY = scenario.DAY


@pytest.fixture(scope="module")
def planted(sandbox):
    return scenario.build(sandbox)


@pytest.fixture
def state(planted, tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.from_url(url)
    store.migrate()
    planted.write_ledger(store)
    reports = tmp_path / "reports"
    env = {
        **connection_env(planted.sandbox, url),
        "AIRFLOW_VAR_STRIPE_SITECORE_RECONCILIATION": json.dumps({"reports_dir": str(reports)}),
        "AIRFLOW_VAR_STRIPE_SITECORE_FRAUD_REPORT": json.dumps({"reports_dir": str(reports)}),
    }
    yield store, env, reports
    store.dispose()


def snapshot(store: StateStore, day) -> dict:
    """Everything a day's reports stored, comparable across runs."""
    with store.engine.connect() as conn:
        return {
            "items": list(repo.stream_items(conn, day)),
            "totals": repo.totals(conn, day),
            "flags": [
                {**flag, "evidence": json.dumps(flag["evidence"], sort_keys=True)}
                for flag in repo.flags(conn, day)
            ],
            "counts": {
                report: (repo.get_run(conn, report, day) or {}).get("counts")
                for report in ("reconciliation", "fraud")
            },
        }


def run_day(day, env):
    logical_date = scenario.LOGICAL_DATE + (day - DAY)
    results = {}
    for dag_id in ("reconciliation_daily", "fraud_report_daily"):
        result = run_dag(dag_id, logical_date, env)
        assert result.state == "success", result.task_states
        results[dag_id] = result
    return results


@pytest.mark.airflow
def test_both_reports_find_exactly_what_was_planted(state):
    store, env, reports = state

    runs = run_day(DAY, env)

    recon = runs["reconciliation_daily"]
    assert (recon.data_interval_start.date(), recon.data_interval_end.date()) == (
        DAY,
        DAY + timedelta(days=1),
    )
    summary = recon.returns["classify"]
    with store.engine.connect() as conn:
        items = list(repo.stream_items(conn, DAY))
        flags = repo.flags(conn, DAY)
    assert {scenario.item_label(i) for i in items} == scenario.EXPECTED_ITEMS
    assert len(items) == len(scenario.EXPECTED_ITEMS)
    expected_counts = {}
    for _, _, category in scenario.EXPECTED_ITEMS:
        expected_counts[category] = expected_counts.get(category, 0) + 1
    assert summary["categories"] == expected_counts
    assert {a["kind"] for a in summary["alerts"]} == {
        f"reconciliation.{c}"
        for c in expected_counts
        if c not in {"matched", "awaiting_payment", "canceled"}
    }
    assert summary["totals"]["usd"]["payouts"] == 1
    assert recon.returns["self_heal"] == {"day": DAY.isoformat(), "enabled": False}

    with open(recon.returns["publish_report"]["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(items)
    html = (reports / "reconciliation" / f"{DAY}.html").read_text()
    assert (
        "<svg" in html
        and "<script" not in html
        and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    )

    fraud = runs["fraud_report_daily"].returns["flag_orders"]
    assert {(f["subject"], f["rule_id"]) for f in flags} == scenario.EXPECTED_FLAGS
    assert fraud["flagged_orders"] == len({s for s, _ in scenario.EXPECTED_FLAGS})
    [alert] = fraud["alerts"]
    assert set(alert["details"]["orders"]) == scenario.HIGH_SEVERITY_ORDERS
    assert (reports / "fraud" / f"{DAY}.html").exists()


@pytest.mark.airflow
def test_rerunning_a_day_and_backfilling_a_range_give_the_same_results(state):
    store, env, _ = state
    run_day(DAY, env)
    single = snapshot(store, DAY)

    # A backfill runs each interval of the range in order; the range includes DAY again.
    for day in (DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)):
        run_day(day, env)

    assert snapshot(store, DAY) == single
    with store.engine.connect() as conn:
        before = {scenario.item_label(i) for i in repo.stream_items(conn, DAY - timedelta(days=1))}
        after = {scenario.item_label(i) for i in repo.stream_items(conn, DAY + timedelta(days=1))}
        flagged_around = repo.flags(conn, DAY - timedelta(days=1)) + repo.flags(
            conn, DAY + timedelta(days=1)
        )
    assert before == scenario.EXPECTED_ITEMS_DAY_BEFORE
    assert after == scenario.EXPECTED_ITEMS_NEXT_DAY
    assert flagged_around == []


@pytest.mark.airflow
def test_settings_that_cannot_work_fail_the_run_at_once_and_say_why(state):
    _, env, _ = state

    result = run_dag(
        "reconciliation_daily",
        scenario.LOGICAL_DATE,
        env,
        conf={"grace_period_minutes": "two hours", "day": scenario.DAY.isoformat()},
    )

    assert result.state == "failed"
    assert result.task_states["stage_sitecore"] == "failed"
    assert result.task_states["classify"] == "upstream_failed"
