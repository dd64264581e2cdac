"""A request budget: a token bucket that every thread of the process draws from.

Stripe limits requests per account and per second; the flows call it from bounded thread pools,
so the budget must be one object per process and account, not per client or thread. Waiting
for a token is cheaper than a 429 and its backoff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` saved up for a burst.

    ``acquire`` reserves a token and sleeps until it is due, outside the lock, so waiting
    threads are served in the order they arrived and nobody spins. In any window of ``t``
    seconds at most ``capacity + rate * t`` tokens are handed out.
    """

    def __init__(
        self,
        rate: float,
        capacity: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests per second, not {rate}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 token, not {capacity}")
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._tokens = self.capacity
        self._updated = clock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def reserve(self) -> float:
        """Take a token; the seconds until it may be used (0 when one was available)."""
        with self._lock:
            self._refill(self._clock())
            # Going negative is a reservation: later callers queue behind this one.
            self._tokens -= 1
            return max(0.0, -self._tokens / self.rate)

    def acquire(self) -> float:
        """Block until a token is ours; the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def pause(self, seconds: float) -> None:
        """Hand out nothing for ``seconds``: the server said slow down, to all our threads."""
        with self._lock:
            self._refill(self._clock())
            self._tokens = min(self._tokens, -seconds * self.rate)

    def reconfigure(self, rate: float, capacity: float) -> None:
        with self._lock:
            self._refill(self._clock())
            self.rate, self.capacity = float(rate), float(capacity)
            self._tokens = min(self._tokens, self.capacity)


_registry: dict[Hashable, TokenBucket] = {}
_registry_lock = threading.Lock()


def shared_bucket(key: Hashable, rate: float, capacity: float) -> TokenBucket:
    """The process-wide bucket for ``key``; a later, different rate wins (a changed connection)."""
    with _registry_lock:
        bucket = _registry.get(key)
        if bucket is None:
            bucket = _registry[key] = TokenBucket(rate, capacity)
        elif (bucket.rate, bucket.capacity) != (rate, capacity):
            bucket.reconfigure(rate, capacity)
        return bucket


def burst_for(rate: float) -> float:
    """A tenth of a second's worth, at least one: bursts stay well inside a per-second limit."""
    return max(1.0, rate / 10)
