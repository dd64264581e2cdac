"""What a validation run found, row by row, and the step that dead-letters the failures."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stripe_sitecore.store.state import StateTx


@dataclass(frozen=True)
class Failure:
    """One failed expectation for one row: which (``expectation``), why (``reason``), and the
    stable ``rule`` the dead letter carries (``validation.<payload type>.<check>``)."""

    expectation: str
    reason: str
    rule: str


@dataclass
class ValidationReport:
    payload_type: str
    passed: list[str]
    failed: dict[str, list[Failure]]
    seconds: float = 0.0
    data_docs: str | None = None
    failures_by_rule: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """One line for the task log: counts, which checks failed how often, where the docs are."""
        rows = len(self.passed) + len(self.failed)
        text = (
            f"validation {self.payload_type}: {rows} row(s), {len(self.passed)} passed, "
            f"{len(self.failed)} failed in {self.seconds:.2f}s"
        )
        if self.failures_by_rule:
            counts = ", ".join(f"{rule}={n}" for rule, n in sorted(self.failures_by_rule.items()))
            text += f"; failing checks: {counts}"
        if self.data_docs:
            text += f"; data docs: {self.data_docs}"
        return text


# Deeper than this, a dead letter keeps a marker instead of the rest: the JSON encoders (and
# Python's recursion limit) give up around a thousand levels, and no person reads past ten.
MAX_KEPT_DEPTH = 64


def jsonable(value: Any, _depth: int = 0) -> Any:
    """Decimals and times as strings, so a dead letter keeps exact values in its JSON column;
    anything nested deeper than ``MAX_KEPT_DEPTH`` levels is cut, with a marker saying so."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list | tuple) and _depth >= MAX_KEPT_DEPTH:
        return f"<cut: nested deeper than {MAX_KEPT_DEPTH} levels>"
    if isinstance(value, dict):
        return {str(k): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, _depth + 1) for v in value]
    return value


def quarantine_failures(
    report: ValidationReport, records_by_key: dict[str, Any], tx: StateTx, source: str
) -> int:
    """Dead-letter every failed row with its record, the first failed rule and every reason.

    ``records_by_key`` holds what a replay needs (usually the source record, not the payload).
    Returns how many records were quarantined.
    """
    for key, failures in report.failed.items():
        tx.quarantine(
            source=source,
            record_key=key,
            record=jsonable(records_by_key[key]),
            rule=failures[0].rule,
            reason="; ".join(f"{f.expectation}: {f.reason}" for f in failures),
        )
    return len(report.failed)
