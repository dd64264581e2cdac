"""What every flow shares: the data window, the run summary, per-record failure handling."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from stripe_sitecore.errors import (
    API_ERRORS,
    ConfigurationError,
    ErrorKind,
    classify,
    refusal,
)
from stripe_sitecore.mapping import Mapping, MappingError, Problem
from stripe_sitecore.validation import jsonable

if TYPE_CHECKING:
    from stripe_sitecore.store.state import StateStore

log = logging.getLogger(__name__)

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
    """What a task did, counted from its worker threads (``count`` takes a lock)."""

    read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    quarantined: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def as_dict(self) -> dict[str, int]:
        # Not dataclasses.asdict: it would deep-copy the lock.
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_COUNTS}

    def log(self, logger: logging.Logger, what: str) -> None:
        logger.info("%s: %s", what, ", ".join(f"{k}={v}" for k, v in self.as_dict().items()))

    def fail(self, what: str, error: Exception, logger: logging.Logger) -> None:
        """Count a record that hit a retryable error; the batch goes on without it."""
        with self._lock:
            self.failed += 1
            self.failures.append(f"{what}: {error}")
        logger.warning("%s failed, will retry with the task: %s", what, error)

    def raise_if_failed(self, what: str) -> None:
        """Fail the task after the whole batch ran, so Airflow retries only what is left."""
        if self.failed:
            shown = "; ".join(self.failures[:10])
            raise BatchIncomplete(f"{what}: {self.failed} record(s) failed: {shown}")


_NOT_COUNTS = frozenset({"failures", "_lock"})


class BatchIncomplete(RuntimeError):
    """Some records hit errors that a retry may cure; the rest of the batch was processed."""


# Dead-letter keys are at most this long (the column's size); longer ones keep a digest.
MAX_RECORD_KEY = 255


def quarantine(
    store: StateStore,
    summary: RunSummary | None,
    *,
    source: str,
    key: str,
    record: Any,
    rule: str | None,
    reason: str | None,
    request_digest: str | None = None,
) -> None:
    """Dead-letter one record with the rule that failed and a readable reason; the batch goes
    on. The one way every flow quarantines."""
    key = str(key)
    if len(key) > MAX_RECORD_KEY:
        key = f"{key[:180]}...sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    with store.begin() as tx:
        tx.quarantine(
            source=source,
            record_key=key,
            record=jsonable(record),
            rule=rule or "mapping",
            reason=reason or "rejected by the mapping",
            request_digest=request_digest,
        )
    log.warning("%s %s quarantined (%s): %s", source, key, rule, reason)
    if summary is not None:
        summary.count(quarantined=1)


def quarantine_refusal(
    store: StateStore,
    summary: RunSummary | None,
    error: BaseException,
    *,
    source: str,
    key: str,
    record: Any,
    request_digest: str | None = None,
) -> None:
    """Dead-letter a record the other side refused for good (``errors.ErrorKind.FINAL``)."""
    refused = refusal(error)
    quarantine(
        store,
        summary,
        source=source,
        key=key,
        record={"record": record, "refusal": refused.details} if refused.details else record,
        rule=refused.rule,
        reason=refused.reason,
        request_digest=request_digest,
    )


def run_each(
    items: Iterable[Any],
    work: Callable[[Any], None],
    describe: Callable[[Any], str],
    summary: RunSummary,
    *,
    on_refused: Callable[[Any, BaseException], None] | None = None,
    max_workers: int = MAX_WORKERS,
) -> None:
    """Run ``work`` on every item in a bounded pool; one record's failure spares the others.

    What happens to a record whose work raised an API error depends on its kind
    (``errors.classify``): retryable errors count the record failed (the task fails after the
    batch and Airflow retries it); a refusal for good goes to ``on_refused`` (which dead-letters
    it; without one it counts as failed); a configuration error ends the task at once.
    """

    def guarded(item: Any) -> None:
        try:
            work(item)
        except API_ERRORS as exc:
            kind = classify(exc)
            if kind is ErrorKind.CONFIG:
                raise ConfigurationError(f"{describe(item)}: {exc}") from exc
            if kind is ErrorKind.FINAL and on_refused is not None:
                on_refused(item, exc)
            else:
                summary.fail(describe(item), exc, log)

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="flow") as pool:
        list(pool.map(guarded, items))


def validated(
    payload_type: str | None,
    candidates: dict[str, dict[str, Any]],
    records: dict[str, Any],
    store: StateStore,
    summary: RunSummary,
    source: str,
) -> list[str]:
    """The keys whose payloads pass the Great Expectations suite the mapping declares
    (``payload_type``); every other one is dead-lettered with its record and the expectations
    it failed. The one validate-then-quarantine step of every flow."""
    if not candidates:
        return []  # nothing to write: Great Expectations is not even imported
    if payload_type is None:
        return sorted(candidates)
    from stripe_sitecore.validation import quarantine_failures, validate_batch

    report = validate_batch(payload_type, list(candidates.items()))
    log.info("validation %s: %s", payload_type, report.summary())
    if report.failed:
        with store.begin() as tx:
            summary.count(quarantined=quarantine_failures(report, records, tx, source))
    return sorted(report.passed)


S = TypeVar("S", bound=BaseModel)


def flow_settings(mapping: Mapping, model: type[S]) -> S:
    """A flow's options from its mapping file's ``settings:``, checked by ``model`` (pydantic):
    a wrong or unknown setting fails the task like a broken mapping, naming file and key."""
    try:
        return model.model_validate(mapping.settings)
    except ValidationError as exc:
        problems = [
            Problem(
                None,
                None,
                "settings." + ".".join(str(part) for part in error["loc"]),
                error["msg"],
            )
            for error in exc.errors()
        ]
        raise MappingError(mapping.file, problems) from None
