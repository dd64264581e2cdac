"""Tasks that fail when told to, with the project's alerting callbacks: without retries, and
with one immediate retry."""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, task

from stripe_sitecore.dag_defaults import DEFAULT_ARGS, START_DATE


@dag(
    dag_id="alert_probe",
    schedule=CronDataIntervalTimetable("*/5 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    default_args={**DEFAULT_ARGS, "retries": 0},
    tags=["test"],
    doc_md="Fails its task when ALERT_PROBE_FAIL=1, so the failure alert can be read.",
)
def alert_probe():
    @task
    def charge_order() -> str:
        if os.environ.get("ALERT_PROBE_FAIL") == "1":
            # Braces: the alert text must reach the channels as written, not as a template.
            raise ValueError("order o-42 could not be charged: {{ card_declined }}")
        return "charged"

    charge_order()


alert_probe()


@dag(
    dag_id="alert_probe_retry",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    default_args={
        **DEFAULT_ARGS,
        "retries": 1,
        "retry_delay": timedelta(0),
        "retry_exponential_backoff": False,
    },
    tags=["test"],
    doc_md="Fails twice when ALERT_PROBE_FAIL=1: the retry must stay quiet, the last try alert.",
)
def alert_probe_retry():
    @task
    def charge_order() -> str:
        if os.environ.get("ALERT_PROBE_FAIL") == "1":
            raise ValueError("card declined")
        return "charged"

    charge_order()


alert_probe_retry()
