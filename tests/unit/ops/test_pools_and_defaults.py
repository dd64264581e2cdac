"""The pools every deployment creates and the alerting every DAG gets from dag_defaults."""

from __future__ import annotations

import json
import subprocess
import sys

from stripe_sitecore import dag_defaults, pools
from stripe_sitecore.alerting.channels import Alert
from stripe_sitecore.alerting.notifiers import TaskFailureNotifier, TaskRecoveryNotifier


def test_pools_print_as_airflow_pools_import_reads_them():
    printed = subprocess.run(
        [sys.executable, "-m", "stripe_sitecore.pools"], capture_output=True, text=True, check=True
    ).stdout
    document = json.loads(printed)
    assert set(document) == {"stripe_api", "ordercloud_api", "erp_api"}
    for spec in document.values():
        assert spec["slots"] >= 1 and spec["description"]
    assert [body["name"] for body in pools.as_rest_bodies()] == list(pools.POOL_NAMES)


def test_failures_alert_retries_do_not_and_every_run_has_a_deadline():
    args = dag_defaults.DEFAULT_ARGS
    assert [type(c) for c in args["on_failure_callback"]] == [TaskFailureNotifier]
    assert [type(c) for c in args["on_success_callback"]] == [TaskRecoveryNotifier]
    assert "on_retry_callback" not in args
    deadline = dag_defaults.FIVE_MINUTE_DEADLINE
    assert deadline.interval.total_seconds() == 900
    assert deadline.callback.path == "stripe_sitecore.alerting.notifiers.deadline_missed"
    assert deadline.callback.kwargs == {"expected_seconds": 900}


def test_alert_html_escapes_and_links():
    alert = Alert("task failed: <x>", "Error: a < b & {{ c }}", link="https://ui/dags/d?x=1&y=2")
    assert "Error: a &lt; b &amp; {{ c }}" in alert.html()
    assert 'href="https://ui/dags/d?x=1&amp;y=2"' in alert.html()
    assert alert.text().endswith("Log: https://ui/dags/d?x=1&y=2")
    assert alert.payload()["severity"] == "error"
