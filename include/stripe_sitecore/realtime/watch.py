"""When the inbox trigger fires: the decision, kept apart from Airflow and the database so it
can be tested step by step.

- **New deliveries** (received after what the last drain saw and after what this watch already
  fired for): fire at once.
- **Rows a drain left unprocessed** (an order or a PaymentIntent that could not be read, a
  task that failed): fire again only with backoff, doubling from ``retry_backoff`` up to
  ``max_backoff``, so a row nothing can apply does not start a run every half second. Rows that
  cannot be applied for good (another backend's, other event types, dead-lettered) are recorded
  as processed by the drain and are not counted.

A watch created afresh (a triggerer restart) knows only the drain's mark: deliveries received
while no trigger ran are newer than it and fire at once; rows left unprocessed fire on the first
check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stripe_sitecore.realtime.inbox import DrainMark


@dataclass
class InboxWatch:
    retry_backoff: float = 30.0
    max_backoff: float = 600.0
    fired_up_to: datetime | None = None
    # When unprocessed rows are counted next (monotonic seconds); None: at the next check.
    next_check: float | None = None
    backoff: float = 0.0

    def __post_init__(self) -> None:
        self.backoff = self.backoff or self.retry_backoff

    def decide(
        self,
        newest: datetime | None,
        mark: DrainMark,
        now: float,
        count_unprocessed: Callable[[], int],
    ) -> dict[str, Any] | None:
        """The event payload to fire, or None. ``now`` is a monotonic clock in seconds."""
        seen = max((t for t in (self.fired_up_to, mark.seen_until) if t is not None), default=None)
        if newest is not None and (seen is None or newest > seen):
            self.fired_up_to = newest
            # New deliveries are drained with the rest: the retry clock starts over.
            self.backoff = self.retry_backoff
            self.next_check = now + self.retry_backoff
            return {"reason": "new_deliveries", "newest_received": newest.isoformat()}
        if self.next_check is not None and now < self.next_check:
            return None
        unprocessed = count_unprocessed()
        if not unprocessed:
            self.backoff = self.retry_backoff
            self.next_check = now + self.retry_backoff
            return None
        wait = self.backoff
        self.next_check = now + wait
        self.backoff = min(wait * 2, self.max_backoff)
        return {"reason": "unprocessed_after_drain", "unprocessed": unprocessed,
                "next_retry_seconds": wait}  # fmt: skip
