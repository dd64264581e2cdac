"""When the inbox trigger fires (``InboxWatch.decide``), step by step on a fake clock."""

from datetime import UTC, datetime, timedelta

from stripe_sitecore.realtime.inbox import DrainMark
from stripe_sitecore.realtime.watch import InboxWatch

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
NO_DRAIN = DrainMark(None, 0, None)


def never_counted():
    raise AssertionError("counted unprocessed rows before the backoff was over")


def test_new_deliveries_fire_once_until_newer_ones_arrive():
    watch = InboxWatch(retry_backoff=30)
    assert watch.decide(None, NO_DRAIN, 0.0, lambda: 0) is None  # empty inbox
    fired = watch.decide(T0, NO_DRAIN, 1.0, never_counted)
    assert fired == {"reason": "new_deliveries", "newest_received": T0.isoformat()}
    # The drain has not run yet: the same newest row does not fire again on every poll.
    assert watch.decide(T0, NO_DRAIN, 1.5, never_counted) is None
    later = T0 + timedelta(milliseconds=1)
    assert watch.decide(later, NO_DRAIN, 2.0, never_counted)["reason"] == "new_deliveries"


def test_rows_the_last_drain_saw_do_not_fire_a_fresh_watch():
    drained = DrainMark(seen_until=T0, pending=0, drained_at=T0)
    assert InboxWatch().decide(T0, drained, 0.0, lambda: 0) is None
    newer = T0 + timedelta(seconds=1)
    assert InboxWatch().decide(newer, drained, 0.0, never_counted)["reason"] == "new_deliveries"


def test_unprocessed_rows_fire_at_once_after_a_restart_then_with_doubling_backoff_to_the_cap():
    drained = DrainMark(seen_until=T0, pending=2, drained_at=T0)
    watch = InboxWatch(retry_backoff=10, max_backoff=40)
    fired = [t for t in range(0, 200) if watch.decide(T0, drained, float(t), lambda: 2)]
    assert fired == [0, 10, 30, 70, 110, 150, 190]


def test_backoff_starts_over_once_nothing_is_left_or_something_new_arrives():
    drained = DrainMark(seen_until=T0, pending=1, drained_at=T0)
    watch = InboxWatch(retry_backoff=10, max_backoff=80)
    left = {"rows": 1}
    fired = [t for t in range(0, 100) if watch.decide(T0, drained, float(t), lambda: left["rows"])]
    assert fired == [0, 10, 30, 70]
    left["rows"] = 0  # a drain applied it
    assert watch.decide(T0, drained, 150.0, lambda: 0) is None
    assert watch.backoff == 10
    left["rows"] = 1
    assert watch.decide(T0, drained, 160.0, lambda: 1)  # 10 s later, not 160
    newer = T0 + timedelta(seconds=5)
    assert watch.decide(newer, drained, 161.0, never_counted)["reason"] == "new_deliveries"
    assert watch.backoff == 10


def test_the_drain_mark_round_trips_through_its_cursor_text():
    mark = DrainMark(seen_until=T0, pending=3, drained_at=T0 + timedelta(seconds=2))
    assert DrainMark.from_json(mark.to_json()) == mark
    assert DrainMark.from_json(None) == NO_DRAIN
