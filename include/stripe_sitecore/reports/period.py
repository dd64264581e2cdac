"""The day a report covers: a calendar day in the business timezone, as a UTC window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from None


@dataclass(frozen=True)
class ReportPeriod:
    """``[start, end)`` in UTC: midnight to midnight of ``day`` in ``timezone`` (23 or 25 hours
    on the days the clocks change)."""

    day: date
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        zone(self.timezone)

    @property
    def start(self) -> datetime:
        return _midnight(self.day, self.timezone)

    @property
    def end(self) -> datetime:
        return _midnight(self.day + timedelta(days=1), self.timezone)

    def shifted(self, days: int) -> ReportPeriod:
        return ReportPeriod(self.day + timedelta(days=days), self.timezone)

    def __str__(self) -> str:
        return f"{self.day.isoformat()} ({self.timezone})"


def _midnight(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone(timezone)).astimezone(UTC)


def report_day(
    *,
    timezone: str,
    data_interval_start: datetime | None,
    run_after: datetime | None,
    requested: str | date | None = None,
) -> date:
    """Which day a run reports on.

    An explicit ``requested`` day wins (a manual run for a given date). Otherwise the local date,
    in the business timezone, of the start of the run's data interval: the daily
    ``CronDataIntervalTimetable`` interval that starts on day D (at 02:00 UTC, say) reports D, and
    its run starts after D is over. A manual run without an interval reports the day before
    ``run_after``.
    """
    if requested:
        return requested if isinstance(requested, date) else date.fromisoformat(str(requested))
    if data_interval_start is not None:
        return data_interval_start.astimezone(zone(timezone)).date()
    if run_after is None:
        raise ValueError("the run has neither a data interval nor run_after: give a day")
    return run_after.astimezone(zone(timezone)).date() - timedelta(days=1)


def period_from_context(context: dict[str, Any], timezone: str, requested=None) -> ReportPeriod:
    dag_run = context.get("dag_run")
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and start == end:
        start = None  # a zero-length interval (a manual trigger) says nothing about the day
    day = report_day(
        timezone=timezone,
        data_interval_start=start,
        run_after=getattr(dag_run, "run_after", None),
        requested=requested,
    )
    return ReportPeriod(day, timezone)
