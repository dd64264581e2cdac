"""What every flow shares: the data window, the run summary, per-record failure handling."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
import stripe

from stripe_sitecore.clients.ordercloud import OrderCloudError

log = logging.getLogger(__name__)

# The Sitecore backend the flows serve; links, idempotency keys and metadata carry it.
BACKEND = "ordercloud"

# Errors a task retry may cure: the batch goes on without the record and the task fails at the end.
RETRYABLE_ERRORS = (OrderCloudError, requests.RequestException, stripe.StripeError)
# Concurrent API calls per task: well under Stripe's test-mode 25 requests/s with the budget.
MAX_WORKERS = 8


@dataclass(frozen=True)
class Window:
    """A run's data interval ``[start, end)``, plus how far back to re-read for late arrivals."""

    start: datetime
    end: datetime
    overlap: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise ValueError(f"empty window: start {self.start} is not before end {self.end}")

    @property
    def read_from(self) -> datetime:
        return self.start - self.overlap


@dataclass
class RunSummary:
    read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    quarantined: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        counts = asdict(self)
        counts.pop("failures")
        return counts

    def log(self, logger: logging.Logger, what: str) -> None:
        logger.info("%s: %s", what, ", ".join(f"{k}={v}" for k, v in self.as_dict().items()))

    def fail(self, what: str, error: Exception, logger: logging.Logger) -> None:
        """Count a record that hit a retryable error; the batch goes on without it."""
        self.failed += 1
        self.failures.append(f"{what}: {error}")
        logger.warning("%s failed, will retry with the task: %s", what, error)

    def raise_if_failed(self, what: str) -> None:
        """Fail the task after the whole batch ran, so Airflow retries only what is left."""
        if self.failed:
            shown = "; ".join(self.failures[:10])
            raise BatchIncomplete(f"{what}: {self.failed} record(s) failed: {shown}")


class BatchIncomplete(RuntimeError):
    """Some records hit errors that a retry may cure; the rest of the batch was processed."""


def run_each(
    items: Iterable[Any],
    work: Callable[[Any], None],
    describe: Callable[[Any], str],
    summary: RunSummary,
    *,
    max_workers: int = MAX_WORKERS,
) -> None:
    """Run ``work`` on every item in a bounded pool; a retryable failure spares the others."""

    def guarded(item: Any) -> None:
        try:
            work(item)
        except RETRYABLE_ERRORS as exc:
            summary.fail(describe(item), exc, log)

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="flow") as pool:
        list(pool.map(guarded, items))
