"""An overdue run alerts, in a real Airflow stack (scheduler, DAG processor, API server).

The probe DAGs use dag_defaults as the project's DAGs do, with a 5-second limit: the scheduler
stops the run that outlives it, the DAG processor runs the DAG's on_failure_callback, and the
alert reaches the ``alert_webhook`` channel, an HTTP receiver run here. A run that fails for
another reason alerts only its task's failure, not "overdue".
"""

from __future__ import annotations

import textwrap
import time
from datetime import datetime

import pytest

from tests.integration.alerting.receivers import HttpSink, connection_env, wait_for

PROBES = textwrap.dedent(
    """
    import time
    from datetime import timedelta

    from airflow.sdk import dag, task

    from stripe_sitecore.dag_defaults import DEFAULT_ARGS, START_DATE, alert_run_overdue


    @dag(
        dag_id="overdue_probe",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        default_args={**DEFAULT_ARGS, "retries": 0},
        dagrun_timeout=timedelta(seconds=5),
        on_failure_callback=alert_run_overdue,
        tags=["test"],
    )
    def overdue_probe():
        @task
        def outlive_the_limit():
            time.sleep(300)

        outlive_the_limit()


    @dag(
        dag_id="failing_probe",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        default_args={**DEFAULT_ARGS, "retries": 0},
        dagrun_timeout=timedelta(minutes=10),
        on_failure_callback=alert_run_overdue,
        tags=["test"],
    )
    def failing_probe():
        @task
        def fail():
            raise ValueError("a plain task failure")

        fail()


    overdue_probe()
    failing_probe()
    """
)


@pytest.fixture(scope="module")
def alerts():
    with HttpSink().running() as sink:
        yield sink


@pytest.fixture(scope="module")
def stack(start_airflow_stack, alerts, tmp_path_factory):
    dags = tmp_path_factory.mktemp("overdue-dags")
    (dags / "probes.py").write_text(PROBES)
    stack = start_airflow_stack(
        connection_env(alert_webhook=alerts.webhook_connection("/alerts")), dags_folder=dags
    )
    for dag_id in ("overdue_probe", "failing_probe"):
        stack.unpause(dag_id)
    return stack


def _alerts_for(alerts: HttpSink, dag_id: str) -> list[dict]:
    return [r.json() for r in alerts.on("/alerts") if r.json()["details"].get("dag_id") == dag_id]


def test_a_run_past_its_limit_is_stopped_and_alerts_overdue(stack, alerts):
    run_id = stack.trigger("overdue_probe")

    assert stack.wait_for_run("overdue_probe", run_id, timeout=120) == "failed"
    run = stack.dag_run("overdue_probe", run_id)
    started = datetime.fromisoformat(run["start_date"])
    [ti] = stack.task_instances("overdue_probe", run_id)
    # Stopped by the limit, long before the task's own 300 s would have ended.
    assert ti["state"] == "skipped"
    assert (datetime.fromisoformat(run["end_date"]) - started).total_seconds() < 60

    [alert] = wait_for(
        lambda: _alerts_for(alerts, "overdue_probe"), timeout=90, what="the overdue alert"
    )
    arrived = time.time()
    assert alert["severity"] == "warning"
    assert alert["subject"] == f"run overdue: overdue_probe (run {run_id}) not done within 5 s"
    assert alert["details"]["kind"] == "run_overdue"
    assert alert["details"]["expected_seconds"] == 5
    assert alert["details"]["task_id"] == "outlive_the_limit"
    assert alert["link"].endswith(
        f"/dags/overdue_probe/runs/{run_id.replace(':', '%3A').replace('+', '%2B')}"
    )
    print(f"overdue alert arrived {arrived - started.timestamp():.1f} s after the run started")


def test_a_run_failed_by_its_task_alerts_the_task_failure_only(stack, alerts):
    run_id = stack.trigger("failing_probe")

    assert stack.wait_for_run("failing_probe", run_id, timeout=120) == "failed"
    [failure] = wait_for(
        lambda: _alerts_for(alerts, "failing_probe"), timeout=60, what="the task failure alert"
    )
    assert failure["severity"] == "error"
    assert failure["subject"].startswith("task failed: failing_probe.fail")
    # The DAG callback runs after the task's: give it the time the overdue alert took.
    time.sleep(10)
    assert [a["subject"] for a in _alerts_for(alerts, "failing_probe")] == [failure["subject"]]
