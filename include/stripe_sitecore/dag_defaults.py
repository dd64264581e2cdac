"""Settings every DAG shares. Light on purpose: DAG files import it at parse time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

from stripe_sitecore.alerting.channels import Alert, deliver
from stripe_sitecore.alerting.messages import run_url
from stripe_sitecore.alerting.notifiers import (
    TaskFailureNotifier,
    TaskRecoveryNotifier,
    deadline_missed,
)

OWNER = "stripe-sitecore"
START_DATE = datetime(2026, 1, 1)

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    # Alerts go out once a task has failed for good; its retries stay quiet (no
    # on_retry_callback). Which channels get them is decided by the alert_* connections.
    "on_failure_callback": [TaskFailureNotifier()],
    "on_success_callback": [TaskRecoveryNotifier()],
}

EVERY_FIVE_MINUTES = "*/5 * * * *"

# --- overdue runs -------------------------------------------------------------------------------
#
# Each DAG gives ``@dag`` a ``dagrun_timeout`` (one of the limits below) and
# ``on_failure_callback=alert_run_overdue``. The scheduler fails a run still going that long
# after it started and stops its unfinished tasks (marked skipped); the DAG processor then calls
# the DAG's on_failure_callback with reason "timed_out", which alerts "run overdue" (warning).
#
# Not Deadline Alerts (``deadline=``), which alert without stopping the run: in Airflow 3.3.2
# every ``airflow dags test`` of a DAG with a deadline ends in a traceback and leaves the run
# "running" (DagRun.update_state passes the encoded alert that dag.test()'s freshly deserialized
# DAG holds to DeadlineAlertModel.get_by_id()). Airflow 3.3 has no other non-killing mechanism
# (SLAs are gone).
#
# Stopping the run is the price, and it is affordable: every write is idempotent, so redoing a
# stopped run's work never repeats an effect; the next run of a 5-minute DAG re-reads a 10-minute
# overlap, and clearing the failed run in the UI re-reads exactly its window (the way to redo a
# stopped daily report). It also frees the DAG: with max_active_runs=1, a hung run would hold up
# every run after it. Unlike a deadline, the limit counts from the run's start, not from when it
# was queued.

# Three intervals: a run of a 5-minute DAG still going then is holding up the ones after it.
FIVE_MINUTE_RUN_LIMIT = timedelta(minutes=15)
DAILY_RUN_LIMIT = timedelta(hours=2)
# dead_letter_replay: at most 5,000 records, each a few requests on 8 threads: minutes.
MANUAL_RUN_LIMIT = timedelta(minutes=30)


def alert_run_overdue(context: Mapping[str, Any]) -> None:
    """DAG-level ``on_failure_callback``: alerts (warning) when the run failed because it outran
    its ``dagrun_timeout``; any other run failure was already alerted by its failed task.

    A plain callable rather than a ``BaseNotifier``: a notifier renders templates with the
    context's DAG, and under ``dag.test()`` that is the serialized DAG, which cannot, so every
    failed ``airflow dags test`` run would log a traceback from it.
    """
    if context.get("reason") == "timed_out":
        deliver(run_overdue(context), context)


def run_overdue(context: Mapping[str, Any]) -> Alert:
    """The alert for a run the scheduler stopped at its ``dagrun_timeout``.

    ``context`` is what the DAG processor hands a DAG callback: the template context of the
    run's last unfinished task instance, or only ``dag``, ``run_id`` and ``reason`` when there
    was none.
    """
    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", "?")
    run = context.get("dag_run")
    run_id = context.get("run_id") or getattr(run, "run_id", "?")
    limit = getattr(dag, "dagrun_timeout", None) or timedelta(0)
    ti = context.get("ti") or context.get("task_instance")
    task_id = getattr(ti, "task_id", None)
    link = run_url(dag_id, run_id)
    body = "\n".join(
        [
            f"DAG:      {dag_id}",
            f"Run:      {run_id} ({getattr(run, 'run_type', '?')})",
            f"Started:  {getattr(run, 'start_date', '?')}",
            f"Limit:    {_minutes(limit)} after the start (dagrun_timeout)",
            f"Running:  {task_id or '(no task had started)'}",
            "Airflow stopped the run: it is failed and its unfinished tasks are skipped. Writes "
            "are idempotent; the next run re-reads the window's overlap (clear a daily run to "
            "redo it).",
            f"Run page: {link}",
        ]
    )
    return Alert(
        subject=f"run overdue: {dag_id} (run {run_id}) not done within {_minutes(limit)}",
        body=body,
        severity="warning",
        link=link,
        details={
            "kind": "run_overdue",
            "dag_id": dag_id,
            "run_id": run_id,
            "expected_seconds": int(limit.total_seconds()),
            "task_id": task_id,
        },
    )


def _minutes(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min" if seconds and seconds % 60 == 0 else f"{seconds} s"


def run_deadline(expected: timedelta) -> DeadlineAlert:
    """A Deadline Alert for runs that should be done ``expected`` after they were queued.

    Not used by the project's DAGs (see "overdue runs" above: it breaks ``airflow dags test`` in
    Airflow 3.3.2); kept for the Celery topology test's probe DAG, which still uses it.
    """
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=expected,
        callback=AsyncCallback(
            deadline_missed, kwargs={"expected_seconds": int(expected.total_seconds())}
        ),
    )
