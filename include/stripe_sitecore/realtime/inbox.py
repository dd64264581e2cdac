"""What the real-time path reads and writes in the state database: the inbox rows no drain has
applied yet, the newest delivery, and the drain's mark (``sync_cursors`` ``realtime.inbox``).

A row is *unprocessed* while its event id is not in ``processed_events``: the payments flow
records every Stripe event it applied or dead-lettered there, and the drain records the
deliveries it handled itself (OrderCloud hints, types and backends it does not apply). Rows
that hit an error a retry can cure stay unprocessed, so a later drain (or the 5-minute DAGs)
applies them.

No Airflow here: the trigger calls it from a thread, the drain from a task, tests directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from stripe_sitecore.realtime import DRAIN_CURSOR
from stripe_sitecore.store import models
from stripe_sitecore.store.state import StateTx

# Stripe retries a webhook for 3 days: older unprocessed rows are the 5-minute DAGs' business.
PENDING_LOOKBACK = timedelta(days=3)


@dataclass(frozen=True)
class InboxRow:
    event_id: str
    source: str
    event_type: str
    event_created: datetime
    received_at: datetime
    object_id: str | None
    body: dict[str, Any]


@dataclass(frozen=True)
class DrainMark:
    """What the last drain saw: deliveries received up to ``seen_until``; ``pending`` of them
    were left unprocessed; it finished at ``drained_at``."""

    seen_until: datetime | None
    pending: int
    drained_at: datetime | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "seen_until": self.seen_until.isoformat() if self.seen_until else None,
                "pending": self.pending,
                "drained_at": self.drained_at.isoformat() if self.drained_at else None,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> DrainMark:
        if not text:
            return cls(None, 0, None)
        data = json.loads(text)

        def when(key: str) -> datetime | None:
            return datetime.fromisoformat(data[key]) if data.get(key) else None

        return cls(when("seen_until"), int(data.get("pending") or 0), when("drained_at"))


def _unprocessed(since: datetime):
    i, p = models.webhook_inbox, models.processed_events
    return sa.and_(
        i.c.received_at >= since,
        ~sa.exists().where(p.c.event_id == i.c.event_id),
    )


def unprocessed_rows(tx: StateTx, now: datetime | None = None) -> list[InboxRow]:
    """Every unprocessed delivery received in the lookback, in the order received."""
    since = (now or datetime.now(UTC)) - PENDING_LOOKBACK
    i = models.webhook_inbox
    rows = tx.conn.execute(
        sa.select(
            i.c.event_id, i.c.source, i.c.event_type, i.c.event_created, i.c.received_at,
            i.c.object_id, i.c.body,
        )
        .where(_unprocessed(since))
        .order_by(i.c.received_at, i.c.event_id)
    )  # fmt: skip
    return [InboxRow(**row._mapping) for row in rows]


def count_unprocessed(tx: StateTx, now: datetime | None = None) -> int:
    since = (now or datetime.now(UTC)) - PENDING_LOOKBACK
    i = models.webhook_inbox
    return tx.conn.scalar(sa.select(sa.func.count()).select_from(i).where(_unprocessed(since)))


def newest_received(tx: StateTx) -> datetime | None:
    """When the newest delivery arrived (index ``ix_webhook_inbox_received_at``)."""
    value = tx.conn.scalar(sa.select(sa.func.max(models.webhook_inbox.c.received_at)))
    if isinstance(value, str):  # SQLite's aggregate skips the column type
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def drain_mark(tx: StateTx) -> DrainMark:
    return DrainMark.from_json(tx.get_cursor(DRAIN_CURSOR))


def set_drain_mark(tx: StateTx, mark: DrainMark) -> None:
    tx.set_cursor(DRAIN_CURSOR, mark.to_json())
