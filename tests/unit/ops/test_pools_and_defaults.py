"""The pools every deployment creates and the alerting every DAG gets from dag_defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

from stripe_sitecore import dag_defaults, pools
from stripe_sitecore.alerting.channels import Alert
from stripe_sitecore.alerting.notifiers import TaskFailureNotifier, TaskRecoveryNotifier
from tests.harness.airflow import load_dagbag


def test_pools_print_as_airflow_pools_import_reads_them():
    printed = subprocess.run(
        [sys.executable, "-m", "stripe_sitecore.pools"], capture_output=True, text=True, check=True
    ).stdout
    document = json.loads(printed)
    assert set(document) == {"stripe_api", "sitecore_api", "erp_api"}
    for spec in document.values():
        assert spec["slots"] >= 1 and spec["description"]
    assert [body["name"] for body in pools.as_rest_bodies()] == list(pools.POOL_NAMES)


def test_failures_alert_and_retries_do_not():
    args = dag_defaults.DEFAULT_ARGS
    assert [type(c) for c in args["on_failure_callback"]] == [TaskFailureNotifier]
    assert [type(c) for c in args["on_success_callback"]] == [TaskRecoveryNotifier]
    assert "on_retry_callback" not in args


# What each DAG's runs may take before they are overdue (README, Alerting).
RUN_LIMITS = {
    "sitecore_orders_to_stripe": timedelta(minutes=15),
    "stripe_events_to_sitecore": timedelta(minutes=15),
    "paid_orders_to_erp": timedelta(minutes=15),
    "realtime_order_to_cash": timedelta(minutes=15),
    "customer_sync": timedelta(minutes=45),
    "reconciliation_daily": timedelta(hours=2),
    "fraud_report_daily": timedelta(hours=2),
    "dead_letter_replay": timedelta(minutes=30),
}


def test_every_dag_alerts_an_overdue_run_without_a_deadline():
    dagbag = load_dagbag()
    assert not dagbag.import_errors
    assert set(dagbag.dags) == set(RUN_LIMITS)
    for dag_id, dag in dagbag.dags.items():
        assert dag.dagrun_timeout == RUN_LIMITS[dag_id], dag_id
        assert dag.on_failure_callback is dag_defaults.alert_run_overdue, dag_id
        # A deadline= breaks `airflow dags test` in Airflow 3.3.2 (see dag_defaults).
        assert not dag.deadline, dag_id


def _sent(monkeypatch) -> list[Alert]:
    sent: list[Alert] = []
    monkeypatch.setattr(dag_defaults, "deliver", lambda alert, context: sent.append(alert))
    return sent


def test_a_timed_out_run_alerts_overdue_and_other_failures_do_not(monkeypatch):
    sent = _sent(monkeypatch)
    dag = load_dagbag().dags["paid_orders_to_erp"]
    run_id = "scheduled__2026-03-02T10:00:00+00:00"

    # What the DAG processor passes when the run failed because a task failed: that task's
    # own callback has alerted already.
    dag_defaults.alert_run_overdue({"dag": dag, "run_id": run_id, "reason": "task_failure"})
    assert sent == []

    # The minimal context the DAG processor passes when no task instance was left to describe.
    dag_defaults.alert_run_overdue({"dag": dag, "run_id": run_id, "reason": "timed_out"})
    [alert] = sent
    assert alert.severity == "warning"
    assert alert.subject == (
        f"run overdue: paid_orders_to_erp (run {run_id}) not done within 15 min"
    )
    assert alert.details["expected_seconds"] == 900
    assert alert.link.endswith(
        "/dags/paid_orders_to_erp/runs/scheduled__2026-03-02T10%3A00%3A00%2B00%3A00"
    )


def test_alert_html_escapes_and_links():
    alert = Alert("task failed: <x>", "Error: a < b & {{ c }}", link="https://ui/dags/d?x=1&y=2")
    assert "Error: a &lt; b &amp; {{ c }}" in alert.html()
    assert 'href="https://ui/dags/d?x=1&amp;y=2"' in alert.html()
    assert alert.text().endswith("Log: https://ui/dags/d?x=1&y=2")
    assert alert.payload()["severity"] == "error"
