"""Reports where its task ran, and sleeps past its run time limit when asked to."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

from airflow.sdk import dag, get_current_context, task

from stripe_sitecore.dag_defaults import DEFAULT_ARGS, START_DATE, alert_run_overdue


@dag(
    dag_id="topology_probe",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    default_args={**DEFAULT_ARGS, "retries": 0},
    dagrun_timeout=timedelta(seconds=3),
    on_failure_callback=alert_run_overdue,
    tags=["test"],
    doc_md="Test DAG of the Celery topology test: which worker ran me, and a 3 s run time limit.",
)
def topology_probe():
    @task
    def where_am_i() -> dict:
        time.sleep(float(get_current_context()["dag_run"].conf.get("sleep", 0)))
        return {
            "worker_mark": os.environ.get("STRIPE_SITECORE_E2E_WORKER"),
            "hostname": socket.gethostname(),
        }

    where_am_i()


topology_probe()
