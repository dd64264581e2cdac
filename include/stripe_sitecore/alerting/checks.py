"""Data alerts the integration raises about itself: dead letters piling up, streams gone stale.

Each check reads the state database, alerts through ``alerting.send`` and returns what it found,
so a task can also put it in its summary. A condition that persists is alerted again only after
``repeat_every``: the time of the last alert per condition is kept in ``sync_cursors`` under an
``alert:`` key, so it survives task processes and is shared by every worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from stripe_sitecore.alerting import send
from stripe_sitecore.store.state import StateStore

log = logging.getLogger(__name__)

ALERT_KEY_PREFIX = "alert:"
DEFAULT_BACKLOG_THRESHOLD = 25
DEFAULT_STALE_INTERVALS = 3
DEFAULT_REPEAT_EVERY = timedelta(hours=4)


def order_streams(backend: str) -> dict[str, timedelta]:
    """The windowed streams of order to cash and their schedule interval; each order DAG checks
    both, so that one that is paused or failing is reported by the other."""
    return {f"{backend}.orders": timedelta(minutes=5), "stripe.events": timedelta(minutes=5)}


def _due(store: StateStore, key: str, repeat_every: timedelta, now: datetime) -> bool:
    """True (and the time recorded) if the condition ``key`` was not alerted in the last period."""
    key = ALERT_KEY_PREFIX + key
    with store.begin() as tx:
        last = tx.get_cursor(key)
        if last is not None and now - datetime.fromisoformat(last) < repeat_every:
            return False
        tx.set_cursor(key, now.isoformat())
    return True


def _clear(store: StateStore, key: str) -> None:
    # Forget a condition once it is over, so that its next occurrence alerts at once.
    with store.begin() as tx:
        tx.delete_cursor(ALERT_KEY_PREFIX + key)


def check_dead_letter_backlog(
    store: StateStore,
    *,
    threshold: int = DEFAULT_BACKLOG_THRESHOLD,
    sources: Iterable[str] | None = None,
    repeat_every: timedelta = DEFAULT_REPEAT_EVERY,
    now: datetime | None = None,
) -> dict[str, int]:
    """Alert for each source with ``threshold`` or more open dead letters; returns those counts."""
    now = now or datetime.now(UTC)
    with store.begin() as tx:
        counts = tx.count_open_dead_letters()
    wanted = None if sources is None else set(sources)
    over = {}
    for source, count in sorted(counts.items()):
        if wanted is not None and source not in wanted:
            continue
        key = f"dead_letters:{source}"
        if count < threshold:
            _clear(store, key)
            continue
        over[source] = count
        if _due(store, key, repeat_every, now):
            send(
                f"{count} open dead letters from {source}",
                f"{count} records from {source} are quarantined (threshold {threshold}).\n"
                f"Inspect: python -m stripe_sitecore.dead_letters list --source {source}\n"
                f"After a fix, replay them with the dead_letter_replay DAG (source={source}).",
                "warning",
                details={"kind": "dead_letter_backlog", "source": source, "open": count},
            )
    for source in wanted or ():
        if source not in counts:
            _clear(store, f"dead_letters:{source}")
    return over


def check_stale_cursors(
    store: StateStore,
    streams: Mapping[str, timedelta],
    *,
    intervals: int = DEFAULT_STALE_INTERVALS,
    repeat_every: timedelta = DEFAULT_REPEAT_EVERY,
    now: datetime | None = None,
) -> dict[str, datetime]:
    """Alert for each stream whose cursor has not moved for ``intervals`` of its interval.

    ``streams`` maps a cursor name to its DAG's schedule interval. A cursor's position counts as
    the instant it has read up to when it is an ISO-8601 timestamp (windowed streams), otherwise
    its last update does. A stream without a cursor has not started and is not stale.
    Returns the stale streams with the instant they last advanced.
    """
    now = now or datetime.now(UTC)
    with store.begin() as tx:
        cursors = {c.stream: c for c in tx.list_cursors() if c.stream in streams}
    stale = {}
    for stream, interval in sorted(streams.items()):
        cursor = cursors.get(stream)
        if cursor is None:
            continue
        advanced = _position_instant(cursor.position) or cursor.updated_at
        key = f"stale_cursor:{stream}"
        if now - advanced <= interval * intervals:
            _clear(store, key)
            continue
        stale[stream] = advanced
        if _due(store, key, repeat_every, now):
            behind = now - advanced
            send(
                f"stream {stream} has not advanced for {_human(behind)}",
                f"The cursor of {stream} last advanced at {advanced.isoformat()}, "
                f"{_human(behind)} ago ({intervals} intervals of {_human(interval)} allowed).\n"
                "Check that its DAG is unpaused, its runs succeed and the source is reachable.",
                "error",
                details={
                    "kind": "stale_cursor",
                    "stream": stream,
                    "last_advanced": advanced.isoformat(),
                    "behind_seconds": int(behind.total_seconds()),
                },
            )
    return stale


def _position_instant(position: str) -> datetime | None:
    try:
        instant = datetime.fromisoformat(position)
    except (TypeError, ValueError):
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def _human(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def run_health_checks(
    store: StateStore,
    streams: Mapping[str, timedelta],
    *,
    backlog_threshold: int = DEFAULT_BACKLOG_THRESHOLD,
) -> dict[str, dict]:
    """Both checks, for a task to call. Returns what they found, XCom-ready."""
    backlog = check_dead_letter_backlog(store, threshold=backlog_threshold)
    stale = check_stale_cursors(store, streams)
    return {
        "dead_letter_backlog": backlog,
        "stale_cursors": {stream: instant.isoformat() for stream, instant in stale.items()},
    }
