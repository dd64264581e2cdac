"""A new state database just works: tasks migrate it on first use, once, under a lock.

Through ``StateStoreHook.get_conn()``, what every task opens the state database with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException

from stripe_sitecore.hooks.state import StateStoreHook
from stripe_sitecore.store import migrate, models
from stripe_sitecore.store.migrate import MIGRATE_COMMAND, head_revision
from stripe_sitecore.store.state import StateStore
from tests.harness.services import state_connection

CONCURRENT_FIRST_RUNS = 4

# Each process imports everything first, then waits for the same instant, so the four
# migrations really start together rather than one after the other's import.
FIRST_RUN = textwrap.dedent(
    """
    import sys, time
    from stripe_sitecore.hooks.state import StateStoreHook
    import alembic.command, sqlalchemy, psycopg2  # the imports a migration needs, paid up front

    start_at = float(sys.argv[1])
    time.sleep(max(0.0, start_at - time.time()))
    store = StateStoreHook().get_conn()
    print(store.current_revision())
    store.dispose()
    """
)


def _connection_env(url: str, **extra) -> str:
    conn = state_connection(url)
    if extra:
        conn["extra"] = extra
    return json.dumps(conn)


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _versions(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def test_concurrent_first_runs_on_a_new_database_all_succeed_and_migrate_once(state_db_url):
    env = {
        **os.environ,
        "AIRFLOW_CONN_STRIPE_SITECORE_STATE": _connection_env(state_db_url),
    }
    start_at = time.time() + 8  # enough for four interpreters to import on two cores
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_RUN, str(start_at)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(CONCURRENT_FIRST_RUNS)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]

    assert [rc for rc, _, _ in results] == [0] * CONCURRENT_FIRST_RUNS, results
    # Airflow logs to stdout too: the revision is the last line.
    revisions = [out.strip().splitlines()[-1] for _, out, _ in results]
    assert revisions == [head_revision()] * CONCURRENT_FIRST_RUNS
    assert _versions(state_db_url) == [head_revision()]
    assert set(models.metadata.tables) <= _tables(state_db_url)


def test_a_database_at_head_is_checked_once_per_process(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_SITECORE_STATE", _connection_env(url))
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", count)
    try:
        StateStoreHook().get_conn().dispose()  # migrates
        assert any("CREATE TABLE" in s for s in statements)
        statements.clear()
        StateStoreHook().get_conn().dispose()
        assert statements == []  # this process has seen it at head

        migrate._at_head.clear()  # as a new task process: one look at the revision, no more
        StateStoreHook().get_conn().dispose()
        assert len(statements) <= 2 and all("alembic_version" in s for s in statements)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", count)


def test_auto_migrate_false_fails_at_once_naming_the_database_and_the_command(
    monkeypatch, postgres_url
):
    url = sa.make_url(postgres_url).set(username="postgres", password="pw-never-shown")
    conn = _connection_env(url.render_as_string(hide_password=False), auto_migrate="false")
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_SITECORE_STATE", conn)

    with pytest.raises(AirflowFailException) as failure:
        StateStoreHook().get_conn()

    message = str(failure.value)
    assert f"postgres:***@{url.host}:{url.port}/{url.database}" in message
    assert "pw-never-shown" not in message
    assert "connection 'stripe_sitecore_state'" in message
    assert "empty (never migrated)" in message and head_revision() in message
    assert f"run `{MIGRATE_COMMAND}`" in message
    assert _tables(postgres_url) == set()  # it did not migrate behind the DBA's back

    # The command the message names, run where the connection is set, is the cure.
    subprocess.run(
        [sys.executable, "-m", "stripe_sitecore.store", "migrate"],
        env={**os.environ, "AIRFLOW_CONN_STRIPE_SITECORE_STATE": conn},
        check=True,
        capture_output=True,
    )
    StateStoreHook().get_conn().dispose()


def test_a_database_migrated_by_newer_code_fails_at_once(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.from_url(url)
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    store.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_SITECORE_STATE", _connection_env(url))

    with pytest.raises(AirflowFailException, match="'9999_from_the_future', which this code"):
        StateStoreHook().get_conn()


@pytest.mark.parametrize("value", ["maybe", 0.5])
def test_a_wrong_auto_migrate_value_is_refused_with_its_name(monkeypatch, tmp_path, value):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_STRIPE_SITECORE_STATE", _connection_env(url, auto_migrate=value)
    )
    with pytest.raises(AirflowFailException, match="extra auto_migrate must be true or false"):
        StateStoreHook().get_conn()
