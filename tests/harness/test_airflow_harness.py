"""Pins what the DAG tests rely on: which data interval a ``run_dag()`` run reads, and that the
run's env and conf reach the task and its return value comes back."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.harness.airflow import run_dag

PROBE_DAGS = Path(__file__).parent / "testdata" / "dags"

pytestmark = pytest.mark.airflow


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 3, 2, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("logical_date", "interval"),
    [
        pytest.param(at(12, 5), (at(12, 0), at(12, 5)), id="on-boundary-is-interval-end"),
        pytest.param(at(12, 7), (at(12, 0), at(12, 5)), id="between-boundaries"),
        pytest.param(None, (None, None), id="no-logical-date"),
    ],
)
def test_dag_test_data_interval(logical_date, interval):
    result = run_dag("interval_probe", logical_date, dag_folder=PROBE_DAGS)

    assert result.state == "success", result
    assert result.logical_date == logical_date
    assert (result.data_interval_start, result.data_interval_end) == interval
    report = result.returns["report"]
    assert (report["data_interval_start"], report["data_interval_end"]) == tuple(
        None if d is None else d.isoformat() for d in interval
    )


def test_env_and_conf_reach_the_task_and_env_is_restored():
    assert "HARNESS_PROBE" not in os.environ

    result = run_dag(
        "interval_probe",
        at(12, 5),
        env={"HARNESS_PROBE": "seen"},
        conf={"order_id": "o-1"},
        dag_folder=PROBE_DAGS,
    )

    assert result.task_states == {"report": "success"}
    assert result.returns["report"]["probe_env"] == "seen"
    assert result.returns["report"]["conf"] == {"order_id": "o-1"}
    assert "HARNESS_PROBE" not in os.environ
