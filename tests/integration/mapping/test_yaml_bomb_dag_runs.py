"""An alias bomb in a mapping or the fraud-rules file, through real DAG runs (``dag.test()``):
the task fails on its first try, without retries, within seconds, saying file and line.

A configuration error stays broken on retry, so ``MappingError`` becomes
``AirflowFailException`` (no retries). Before the loader counted alias expansions, the same run
sat in the YAML load for minutes and ended in a MemoryError that Airflow would have retried three
times.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import timedelta

import pytest

from stripe_sitecore.mapping import mappings_dir
from stripe_sitecore.mapping.loader import MAX_VALUES
from stripe_sitecore.store import StateStore
from tests.harness.airflow import run_dag
from tests.harness.services import connection_env, recent_interval_start, seed_order
from tests.integration.flows import reports_scenario

INTERVAL_START = recent_interval_start()
LOGICAL_DATE = INTERVAL_START + timedelta(minutes=5)

BOMB = [
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    *(
        f"{name}: &{name} [" + ", ".join([f"*{before}"] * 9) + "]"
        for before, name in zip("abcdefgh", "bcdefghi", strict=True)
    ),
]


def with_bomb(text: str) -> tuple[str, int]:
    """The file with the bomb appended, and the line of the alias that crosses the limit."""
    lines = text.rstrip().splitlines() + ["bomb:"] + ["  " + b for b in BOMB]
    crossing = next(n for n, line in enumerate(lines, 1) if line.strip().startswith("e:"))
    return "\n".join(lines) + "\n", crossing


def task_instance(dag_id: str, run_id: str, task_id: str):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id)
            .one()
        )
        return ti.state, ti.try_number, ti.max_tries


@pytest.fixture
def state_env(clean_sandbox, tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.from_url(url)
    store.migrate()
    store.dispose()
    return clean_sandbox, connection_env(clean_sandbox, url)


@pytest.mark.airflow
def test_a_bomb_mapping_fails_the_orders_task_at_once_without_retries(state_env, tmp_path, capfd):
    sandbox, env = state_env
    sandbox.set_clock((INTERVAL_START + timedelta(minutes=1)).isoformat())
    seed_order(sandbox, "o-1", "25.00", "EUR")
    folder = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), folder)
    path = folder / "ordercloud_order_to_payment_intent.yaml"
    text, line = with_bomb(path.read_text())
    path.write_text(text)

    started = time.monotonic()
    result = run_dag(
        "sitecore_orders_to_stripe",
        LOGICAL_DATE,
        {**env, "STRIPE_SITECORE_MAPPINGS_DIR": str(folder)},
    )
    elapsed = time.monotonic() - started

    task = "push_orders_to_stripe"
    state, try_number, max_tries = task_instance(result.dag_id, result.run_id, task)
    # "failed", not "up_for_retry": Airflow will not try again; the retries stay configured.
    assert (result.state, state, try_number) == ("failed", "failed", 1)
    assert max_tries >= 1
    output = capfd.readouterr()
    log = output.out + output.err
    assert f"{path}:{line}:" in log
    assert f"more than {MAX_VALUES} values once aliases are expanded" in log
    assert "MemoryError" not in log
    # The whole run, with Airflow's own start-up of the run and the other tasks.
    assert elapsed < 60, elapsed
    print(f"\norders DAG with a bomb mapping: failed in {elapsed:.1f}s")


@pytest.mark.airflow
def test_a_bomb_fraud_rules_file_fails_the_fraud_report_at_once_without_retries(
    state_env, tmp_path, capfd
):
    _, env = state_env
    path = tmp_path / "fraud_rules.yaml"
    text, line = with_bomb((mappings_dir() / "fraud_rules.yaml").read_text())
    path.write_text(text)
    settings = {"rules_file": str(path), "reports_dir": str(tmp_path / "reports")}

    started = time.monotonic()
    result = run_dag(
        "fraud_report_daily",
        reports_scenario.LOGICAL_DATE,
        {**env, "AIRFLOW_VAR_STRIPE_SITECORE_FRAUD_REPORT": json.dumps(settings)},
    )
    elapsed = time.monotonic() - started

    state, try_number, _ = task_instance(result.dag_id, result.run_id, "load_facts")
    assert (result.state, state, try_number) == ("failed", "failed", 1)
    assert result.task_states["flag_orders"] == "upstream_failed"
    output = capfd.readouterr()
    log = output.out + output.err
    assert f"{path}:{line}:" in log
    assert "aliases are expanded" in log
    assert not (tmp_path / "reports").exists()
    assert elapsed < 60, elapsed
    print(f"\nfraud DAG with a bomb rules file: failed in {elapsed:.1f}s")
