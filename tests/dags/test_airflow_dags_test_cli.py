"""``airflow dags test <dag_id> <date>``, the real CLI, for every DAG in dags/, against the sandbox.

Each DAG runs in its own process with its own ``AIRFLOW_HOME`` (a copy of the migrated metadata
DB, an empty airflow.cfg) and no ``stripe_sitecore_state`` connection, so it also starts from the
embedded SQLite state DB nobody has migrated: what a new deployment runs first. Two at a time:
the machine has two cores, and each CLI start costs seconds.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
import stripe

from stripe_sitecore.store.migrate import head_revision
from tests.harness.airflow import DAGS_FOLDER, REPO_ROOT, _sqlite_copy, load_dagbag
from tests.harness.services import (
    STRIPE_TEST_KEY,
    connection_env,
    recent_interval_start,
    seed_order,
)

INTERVAL_START = recent_interval_start()
FIVE_MINUTE_RUN = INTERVAL_START + timedelta(minutes=5)
# The CLI's date is the logical date; dag.test() reads the complete interval ending there.
DATES = {
    "sitecore_orders_to_stripe": FIVE_MINUTE_RUN,
    "stripe_events_to_sitecore": FIVE_MINUTE_RUN,
    "paid_orders_to_erp": FIVE_MINUTE_RUN,
    "customer_sync": INTERVAL_START + timedelta(minutes=15),
    "reconciliation_daily": INTERVAL_START.replace(hour=2),
    "fraud_report_daily": INTERVAL_START.replace(hour=2),
    "dead_letter_replay": FIVE_MINUTE_RUN,
    # Asset-scheduled: the date only names the run; the drain reads the inbox, empty here.
    "realtime_order_to_cash": FIVE_MINUTE_RUN,
}
CLI_TIMEOUT_SECONDS = 240

# Real Airflow processes (the CLI), about 2.5 minutes on two cores: with the e2e tests.
pytestmark = pytest.mark.e2e


def _cli_env(home: Path, connections: dict[str, str]) -> dict[str, str]:
    # Nothing of the test session's own Airflow settings: the CLI reads only this home.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return {
        **inherited,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{inherited.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        **connections,
    }


def _dags_test(dag_id: str, home: Path, connections: dict[str, str]) -> subprocess.CompletedProcess:
    (home / "airflow.cfg").touch()  # else the CLI writes a default one, with examples
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "airflow"),
            "dags",
            "test",
            dag_id,
            DATES[dag_id].isoformat(),
        ],
        env=_cli_env(home, connections),
        cwd=home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
    )


def _runs(home: Path, dag_id: str) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(home / "airflow.db")) as db:
        return db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ?", (dag_id,)
        ).fetchall()


def _task_states(home: Path, dag_id: str) -> dict[str, tuple[str, int]]:
    with closing(sqlite3.connect(home / "airflow.db")) as db:
        rows = db.execute(
            "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ?", (dag_id,)
        )
        return {task_id: (state, tries) for task_id, state, tries in rows}


def _state_revision(home: Path) -> str | None:
    path = home / "stripe_sitecore_state.db"
    if not path.exists():
        return None
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchone()[0]


@pytest.fixture(scope="module")
def cli_runs(sandbox, airflow_db_template, tmp_path_factory):
    """Every DAG of dags/ through ``airflow dags test``: {dag_id: (home, completed process)}."""
    sandbox.reset()
    sandbox.set_clock((INTERVAL_START + timedelta(minutes=2)).isoformat())
    # One order in the orders DAG's interval, so that run does real work (a PaymentIntent).
    seed_order(sandbox, "o-cli-1", "19.99", "EUR")
    connections = connection_env(sandbox)  # no stripe_sitecore_state: the embedded default

    def run(dag_id: str):
        home = tmp_path_factory.mktemp(f"dags-test-{dag_id}")
        _sqlite_copy(airflow_db_template, home / "airflow.db")
        return dag_id, (home, _dags_test(dag_id, home, connections))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, sorted(load_dagbag().dags)))


def test_every_dag_of_the_folder_is_run(cli_runs):
    assert set(cli_runs) == set(DATES)


@pytest.mark.parametrize("dag_id", sorted(DATES))
def test_airflow_dags_test_exits_0_and_the_run_succeeds(cli_runs, dag_id):
    home, process = cli_runs[dag_id]
    output = f"{process.stdout}\n{process.stderr}"
    tail = "\n".join(output.splitlines()[-60:])

    assert process.returncode == 0, tail
    [(run_id, state)] = _runs(home, dag_id)
    assert state == "success", tail
    # Each task succeeded at its first try: no retry hid a failure, none was left unrun.
    tasks = _task_states(home, dag_id)
    assert tasks and all(t == ("success", 1) for t in tasks.values()), (tasks, tail)
    # Airflow 3.3.2's deadline handling ends the run in a traceback; nothing else may either.
    assert "Traceback (most recent call last)" not in output, tail
    # The embedded state DB, never migrated by anyone, was migrated by the first task.
    assert _state_revision(home) == head_revision()


def test_the_orders_run_did_real_work(cli_runs, sandbox):
    stripe_client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": sandbox.stripe_url})
    listed = stripe_client.v1.payment_intents.list().data
    assert [pi.metadata["sitecore_order_id"] for pi in listed] == ["o-cli-1"]
