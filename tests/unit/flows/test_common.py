from datetime import UTC, datetime, timedelta

import pytest

from stripe_sitecore.flows.common import BatchIncomplete, RunSummary, Window


def test_window_reads_back_by_the_overlap_and_refuses_naive_or_empty_bounds():
    start = datetime(2026, 11, 26, 10, tzinfo=UTC)
    window = Window(start, start + timedelta(minutes=5), timedelta(minutes=10))
    assert window.read_from == start - timedelta(minutes=10)
    with pytest.raises(ValueError, match="timezone"):
        Window(start.replace(tzinfo=None), start.replace(tzinfo=None) + timedelta(minutes=5))
    with pytest.raises(ValueError, match="empty"):
        Window(start, start)


def test_summary_fails_the_task_only_after_the_batch_when_records_failed():
    summary = RunSummary(read=3, created=2, failed=1, failures=["order o3: 503"])
    assert summary.as_dict() == {
        "read": 3,
        "created": 2,
        "updated": 0,
        "skipped": 0,
        "quarantined": 0,
        "failed": 1,
    }
    with pytest.raises(BatchIncomplete, match="1 record"):
        summary.raise_if_failed("sitecore_orders_to_stripe")
    RunSummary(read=1, created=1).raise_if_failed("ok")
