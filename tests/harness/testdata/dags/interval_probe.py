"""Reports the run's data interval, so the harness self-tests can pin down how Airflow infers it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task


@dag(
    dag_id="interval_probe",
    schedule=CronDataIntervalTimetable("*/5 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={
        "owner": "harness",
        "retries": 2,
        "retry_delay": timedelta(seconds=1),
        "retry_exponential_backoff": True,
    },
    tags=["harness"],
    doc_md="Self-test DAG of the test harness: returns the interval the run reads.",
)
def interval_probe():
    @task
    def report() -> dict[str, str | None]:
        context = get_current_context()

        def iso(key: str) -> str | None:
            value = context.get(key)
            return value.isoformat() if value else None

        return {
            "logical_date": iso("logical_date"),
            "data_interval_start": iso("data_interval_start"),
            "data_interval_end": iso("data_interval_end"),
            "run_after": context["dag_run"].run_after.isoformat(),
            "conf": context["dag_run"].conf,
            "probe_env": os.environ.get("HARNESS_PROBE"),
        }

    report()


interval_probe()
