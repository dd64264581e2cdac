"""The request budget's token bucket, on a fake clock."""

import threading
import time

import pytest

from stripe_sitecore.clients.budget import TokenBucket, burst_for, shared_bucket


class FakeTime:
    """A clock that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_burst_then_one_token_per_interval():
    fake = FakeTime()
    bucket = TokenBucket(10, capacity=2, clock=fake.clock, sleep=fake.sleep)
    waits = [bucket.acquire() for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0.1, 0.1, 0.1])
    assert fake.now == pytest.approx(0.3)


def test_no_window_gets_more_than_capacity_plus_rate_times_length():
    fake = FakeTime()
    bucket = TokenBucket(20, capacity=burst_for(20), clock=fake.clock, sleep=fake.sleep)
    granted = []
    for _ in range(200):
        bucket.acquire()
        granted.append(fake.now)
    for start in granted:
        assert sum(1 for t in granted if start <= t < start + 1) <= 2 + 20


def test_reservations_queue_threads_in_order_without_spinning():
    bucket = TokenBucket(1000, capacity=1)
    # Reserving is instant; each later reservation is due 1 ms after the one before.
    waits = [bucket.reserve() for _ in range(4)]
    assert waits[0] == 0
    assert waits[1:] == pytest.approx([0.001, 0.002, 0.003], abs=5e-4)


def test_pause_holds_every_caller_back():
    fake = FakeTime()
    bucket = TokenBucket(10, capacity=5, clock=fake.clock, sleep=fake.sleep)
    bucket.pause(2.0)
    assert bucket.acquire() == pytest.approx(2.1)


def test_threads_share_one_rate():
    bucket = TokenBucket(200, capacity=1)
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda: [bucket.acquire() for _ in range(10)]) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 80 tokens at 200/s with one in hand: at least 79 / 200 s.
    assert time.monotonic() - started >= 0.39


def test_shared_buckets_are_one_per_key_and_follow_the_latest_rate():
    first = shared_bucket(("unit", "a"), 10, 1)
    assert shared_bucket(("unit", "a"), 10, 1) is first
    assert shared_bucket(("unit", "b"), 10, 1) is not first
    again = shared_bucket(("unit", "a"), 50, 5)
    assert again is first and (first.rate, first.capacity) == (50, 5)


@pytest.mark.parametrize(("rate", "capacity"), [(0, 1), (-1, 1), (1, 0.5)])
def test_nonsense_rates_are_refused(rate, capacity):
    with pytest.raises(ValueError):
        TokenBucket(rate, capacity)
