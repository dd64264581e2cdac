"""The chaos run of benchmarks/chaos_run.py at a size that fits CI, on PostgreSQL."""

import importlib.util
from pathlib import Path

import pytest

CHAOS_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos_run.py"


def load_chaos_run():
    spec = importlib.util.spec_from_file_location("chaos_run", CHAOS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.postgres
def test_nothing_is_lost_or_doubled_under_faults_duplicates_lag_and_killed_tasks(
    postgres_url, start_airflow_stack
):
    report = load_chaos_run().main(
        ["--orders", "24", "--state-url", postgres_url, "--seed", "7"],
        start_airflow=start_airflow_stack,
    )

    assert report["problems"] == []
    assert report["killed_tries"] >= 1, "the run must have survived a SIGKILLed try"
    # The first batch ran in Airflow: its task process was killed mid-batch and Airflow retried.
    assert report["airflow_tasks_killed"] == 1
    assert report["airflow_creates_before_kill"] >= 2
    assert report["airflow_tries"] >= 2
    assert sum(report["faults_injected"].values()) >= 50
    # 24 orders, six kinds: 4 canceled before payment, 20 paid; 8 refunds (4 each way). The ERP's
    # stock holds exactly what its orders reserved (a `problems` entry otherwise).
    assert report["counts"] == {
        "payment_intents": 24,
        "refunds": 8,
        "payments": 20,
        "transactions": 28,
        "erp_orders": 20,
        # Two lines per order, equal to the Sitecore order's (checked order by order); each of
        # the 8 refunds after hand-off one return, and each full refund one cancel.
        "erp_lines": 40,
        "erp_return_messages": 8,
        "erp_cancel_messages": 4,
    }
    assert report["dead_letters"] == report["invalid_orders"] == 1
    # The day's reconciliation: 20 charges and 8 refunds matched, 4 cancels, the 4 disputes as
    # disputes (somebody has to answer them), and the invalid order that never got a
    # PaymentIntent; `problems` above already holds any item that differs from its order's kind.
    categories = dict(report["reconciliation"]["categories"])
    assert categories.pop("no_payment_intent", 0) + categories.pop("awaiting_payment", 0) == 1
    assert categories == {"matched": 28, "canceled": 4, "disputed": 4}
