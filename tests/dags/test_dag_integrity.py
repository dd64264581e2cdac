"""DAG integrity: ``dags/`` parses cleanly and every DAG keeps the house rules of
docs/architecture.md."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.airflow import DAGS_FOLDER, REPO_ROOT, load_dagbag

PUBLIC_DAG_IDS = {
    "sitecore_orders_to_stripe",
    "stripe_events_to_sitecore",
    "paid_orders_to_erp",
    "customer_sync",
    "reconciliation_daily",
    "fraud_report_daily",
    "dead_letter_replay",
    "realtime_order_to_cash",
}
FOUNDATION_DAG_IDS = {"sitecore_orders_to_stripe", "stripe_events_to_sitecore"}
# docs/architecture.md rule 10: these load inside tasks only.
PARSE_TIME_FORBIDDEN = ("great_expectations", "pandas", "stripe", "sqlalchemy", "requests")
MIN_RETRIES = 2


@pytest.fixture(scope="module")
def dagbag():
    return load_dagbag(DAGS_FOLDER)


@pytest.fixture(scope="module")
def dags(dagbag) -> list:
    if not dagbag.dags:
        pytest.fail(f"no DAGs found in {DAGS_FOLDER}")
    return sorted(dagbag.dags.values(), key=lambda dag: dag.dag_id)


def violations(dags: list, check: Callable[[object], Iterator[str]]) -> str:
    return "\n".join(f"{dag.dag_id}: {problem}" for dag in dags for problem in check(dag))


def backoff_multiplier(value: bool | float) -> float:
    # As Airflow's serializer reads it: True means 2.0. A multiplier of 1 does not back off.
    return 2.0 if value is True else float(value)


def test_no_import_errors(dagbag):
    errors = "\n\n".join(f"{path}:\n{error}" for path, error in dagbag.import_errors.items())
    assert not dagbag.import_errors, f"DAG import errors:\n{errors}"


def test_foundation_dags_present(dagbag):
    assert FOUNDATION_DAG_IDS <= set(dagbag.dag_ids)


def test_dag_ids_are_the_public_names(dagbag):
    assert set(dagbag.dag_ids) <= PUBLIC_DAG_IDS, "DAG ids not in docs/architecture.md section 2"


def test_owner_is_set(dags):
    def check(dag):
        if dag.default_args.get("owner", "airflow") == "airflow":
            yield "default_args has no owner (or the default 'airflow')"
        for task in dag.tasks:
            if task.owner in ("", "airflow"):
                yield f"task {task.task_id} has owner {task.owner!r}"

    assert not (problems := violations(dags, check)), problems


def test_retries_with_exponential_backoff(dags):
    def check(dag):
        retries = dag.default_args.get("retries", 0)
        if retries < MIN_RETRIES:
            yield f"default_args retries={retries}, want >= {MIN_RETRIES}"
        backoff = dag.default_args.get("retry_exponential_backoff", 0)
        if backoff_multiplier(backoff) <= 1:
            yield f"default_args retry_exponential_backoff={backoff!r}, want True or > 1"
        for task in dag.tasks:
            if task.retries != retries:
                yield f"task {task.task_id} retries={task.retries}, default_args say {retries}"
            if backoff_multiplier(task.retry_exponential_backoff) <= 1:
                yield f"task {task.task_id} has no exponential backoff"

    assert not (problems := violations(dags, check)), problems


def test_tags_and_docs(dags):
    def check(dag):
        if not dag.tags:
            yield "no tags"
        if not (dag.doc_md or "").strip():
            yield "no doc_md"

    assert not (problems := violations(dags, check)), problems


def test_no_heavy_imports_at_parse_time(dagbag):
    """Each DAG file is imported in a fresh interpreter, so transitive imports count too."""
    files = sorted({dag.fileloc for dag in dagbag.dags.values()})
    if not files:
        pytest.fail(f"no DAG files found in {DAGS_FOLDER}")
    probe = subprocess.run(
        [sys.executable, "-m", "tests.harness.import_probe"]
        + ["--forbid", ",".join(PARSE_TIME_FORBIDDEN), *files],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout.splitlines()[-1])
    for file, result in report.items():
        # Airflow's AssetWatcher validates its trigger by importing airflow.triggers.base, which
        # loads SQLAlchemy: Airflow's own import. "imported" still shows any made by our code.
        if "AssetWatcher(" in Path(file).read_text():
            result["loaded"] = [m for m in result["loaded"] if m != "sqlalchemy"]
    problems = {
        file: {key: value for key, value in result.items() if value}
        for file, result in report.items()
        if any(result.values())
    }
    assert not problems, (
        f"DAG files import {PARSE_TIME_FORBIDDEN} at parse time; move the imports into the "
        f"tasks:\n{json.dumps(problems, indent=2)}"
    )
