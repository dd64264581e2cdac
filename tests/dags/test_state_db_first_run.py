"""The first DAG run of a new deployment, by Airflow (dag.test): the state database just works.

With nothing configured the state lives in a SQLite file in ``AIRFLOW_HOME`` that no one has
migrated; the first task migrates it. A connection with ``auto_migrate: false`` whose database is
behind fails the task at once, without spending its retries.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from stripe_sitecore.store import models
from stripe_sitecore.store.migrate import MIGRATE_COMMAND, head_revision
from tests.harness.airflow import run_dag
from tests.harness.services import connection_env, recent_interval_start, state_connection

LOGICAL_DATE = recent_interval_start() + timedelta(minutes=5)
DAG_ID = "paid_orders_to_erp"
TASK_ID = "send_paid_orders_to_erp"

pytestmark = pytest.mark.airflow


def _tries(dag_id: str, run_id: str, task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalar(
            sa.select(TaskInstance.try_number).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
            )
        )


def test_the_embedded_sqlite_default_is_migrated_by_the_first_task_run(clean_sandbox, tmp_path):
    state_file = tmp_path / "stripe_sitecore_state.db"
    # No stripe_sitecore_state connection: the state DB is the file in this AIRFLOW_HOME.
    env = {**connection_env(clean_sandbox), "AIRFLOW_HOME": str(tmp_path)}

    result = run_dag(DAG_ID, LOGICAL_DATE, env)

    assert result.state == "success", result.task_states
    assert _tries(DAG_ID, result.run_id, TASK_ID) == 1
    engine = sa.create_engine(f"sqlite:///{state_file}")
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert set(models.metadata.tables) <= tables
    assert version == head_revision()


def test_auto_migrate_false_on_a_database_behind_fails_the_task_at_once(
    clean_sandbox, tmp_path, capfd
):
    state_file = tmp_path / "state.db"
    conn = {**state_connection(f"sqlite:///{state_file}"), "extra": {"auto_migrate": False}}
    env = {
        **connection_env(clean_sandbox),
        "AIRFLOW_CONN_STRIPE_SITECORE_STATE": json.dumps(conn),
    }

    started = time.monotonic()
    result = run_dag(DAG_ID, LOGICAL_DATE, env)
    elapsed = time.monotonic() - started

    assert result.state == "failed"
    assert result.task_states == {TASK_ID: "failed"}
    # One try of four: retries would have waited 30 s and more (exponential backoff).
    assert _tries(DAG_ID, result.run_id, TASK_ID) == 1
    assert elapsed < 30
    log = capfd.readouterr().out
    assert f"state database sqlite:///{state_file}" in log
    assert f"run `{MIGRATE_COMMAND}`" in log
    assert (
        not state_file.exists()
        or "alembic_version"
        not in sa.inspect(sa.create_engine(f"sqlite:///{state_file}")).get_table_names()
    )
