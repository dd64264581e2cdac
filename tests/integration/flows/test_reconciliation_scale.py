"""benchmarks/reconciliation_1m.py at 20,000 charges (5,000 on PostgreSQL): the planted answer.

The benchmark's day is generated straight into staging with a discrepancy of every kind at known
places; this keeps the benchmark (and the SQL at volume) honest on every database.
"""

from __future__ import annotations

import csv

import sqlalchemy as sa

from benchmarks import reconciliation_1m as bench

# PostgreSQL shares the test machine's two cores: a smaller day keeps the suite fast there.
ROWS = {"sqlite": 20_000, "postgresql": 5_000}


def test_a_generated_day_reconciles_to_the_planted_answer_in_bounded_memory(state_db_url, tmp_path):
    rows = ROWS[sa.make_url(state_db_url).get_backend_name()]
    result = bench.run(state_db_url, rows, reports_dir=tmp_path)

    assert result["counts"] == result["expected"]
    assert result["ok"]
    assert result["charges"] == rows - rows // bench.PLANT_EVERY * len(bench.ORDER_ONLY)
    assert all(result["expected"][category] == rows // bench.PLANT_EVERY for category in (
        "amount_mismatch", "currency_mismatch", "orphan_charge", "no_payment_intent"
    ))  # fmt: skip
    # The day is classified in the database, not in Python.
    assert result["python_heap_peak_mib_during_classify"] < 16
    with open(tmp_path / "reconciliation" / f"{bench.DAY}.csv", newline="") as f:
        assert sum(1 for _ in csv.DictReader(f)) == result["items"]
