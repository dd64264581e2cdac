"""A controllable clock, one per simulator.

Simulated objects get their timestamps from it, so tests and demos can create data "yesterday" or
jump past retention limits without waiting.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


def parse_instant(value: str) -> datetime:
    """ISO-8601 to an aware UTC datetime; a value without an offset is taken as UTC."""
    instant = datetime.fromisoformat(value)
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


def _real_now() -> datetime:
    return datetime.now(UTC)


class Clock:
    """Real UTC time shifted by an offset, or frozen at one instant."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta()
        self._frozen_at: datetime | None = None

    def now(self) -> datetime:
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return _real_now() + self._offset

    def unix(self) -> int:
        return int(self.now().timestamp())

    def set_now(self, instant: datetime, *, frozen: bool = False) -> None:
        """Make `instant` the current time; it keeps running from there unless frozen."""
        instant = instant.astimezone(UTC)
        with self._lock:
            if frozen:
                self._frozen_at = instant
            else:
                self._frozen_at = None
                self._offset = instant - _real_now()

    def set_offset(self, seconds: float) -> None:
        with self._lock:
            self._frozen_at = None
            self._offset = timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += timedelta(seconds=seconds)
            else:
                self._offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta()
            self._frozen_at = None

    def describe(self) -> dict:
        with self._lock:
            frozen = self._frozen_at is not None
        now = self.now()
        return {
            "now": now.isoformat().replace("+00:00", "Z"),
            "unix": int(now.timestamp()),
            "offset_seconds": (now - _real_now()).total_seconds(),
            "frozen": frozen,
        }
