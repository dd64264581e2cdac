"""Repositories over the state database: cursors, processed events, links, outbox, dead letters.

Every write that a retry may repeat is an upsert in the dialect's own syntax
(``INSERT ... ON CONFLICT``), so a task that dies after committing and runs again changes nothing.
Work that must be atomic (the ledger update and its outbox row) shares one ``StateTx``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from stripe_sitecore.store import models

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Payment states of an order as our ledger sees them. A state only moves to one of equal or
# higher rank, so an event that arrives late cannot undo a later one (docs/architecture.md rule 3).
ORDER_STATE_RANK = {
    "awaiting_payment": 10,
    "payment_failed": 20,
    "requires_action": 20,
    "authorized": 30,
    "canceled": 40,
    "paid": 50,
    "partially_refunded": 60,
    "refunded": 70,
}


# Ledger states in which the customer has not paid, so the PaymentIntent may still change.
UNPAID_STATES = frozenset({"awaiting_payment", "payment_failed", "requires_action"})
# Nothing captured: canceling the PaymentIntent ends it (an authorization is released).
CANCELABLE_STATES = UNPAID_STATES | {"authorized"}
# The money was captured (the Sitecore payment exists).
PAID_STATES = frozenset({"paid", "partially_refunded", "refunded"})

# The outbox topic of paid orders on their way to the ERP (reports.matching reads it too), and
# of what happens to them after hand-off (cancel, return, release).
ERP_TOPIC = "erp.orders"
ERP_CHANGES_TOPIC = "erp.changes"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class OrderLink:
    backend: str
    order_id: str
    payment_intent_id: str | None
    stripe_customer_id: str | None
    latest_charge_id: str | None
    state: str
    amount_minor: int
    currency: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    topic: str
    message_key: str
    payload: dict[str, Any]
    status: str
    attempts: int


# open: waiting for a fix; resolved: went through (replay or by hand); superseded: replayed and
# now fails another rule, whose own dead letter carries on.
DEAD_LETTER_STATUSES = ("open", "resolved", "superseded")


@dataclass(frozen=True)
class DeadLetter:
    id: int
    source: str
    record_key: str
    record: dict[str, Any]
    rule: str
    reason: str
    first_seen: datetime
    last_seen: datetime
    attempts: int
    status: str
    request_digest: str | None = None


@dataclass(frozen=True)
class Cursor:
    stream: str
    position: str
    updated_at: datetime


def _insert(conn: sa.Connection, table: sa.Table):
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"state store supports sqlite and postgresql, not {dialect}")


class StateTx:
    """The repositories, bound to one database transaction."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn

    # --- sync cursors -------------------------------------------------------------------
    def get_cursor(self, stream: str) -> str | None:
        t = models.sync_cursors
        return self.conn.scalar(sa.select(t.c.position).where(t.c.stream == stream))

    def set_cursor(self, stream: str, position: str) -> None:
        t = models.sync_cursors
        stmt = _insert(self.conn, t).values(stream=stream, position=position, updated_at=utcnow())
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.stream],
            set_={"position": stmt.excluded.position, "updated_at": stmt.excluded.updated_at},
        )
        self.conn.execute(stmt)

    # --- processed events ---------------------------------------------------------------
    def processed_event_ids(self, event_ids: list[str]) -> set[str]:
        t = models.processed_events
        if not event_ids:
            return set()
        rows = self.conn.scalars(sa.select(t.c.event_id).where(t.c.event_id.in_(event_ids)))
        return set(rows)

    def mark_event_processed(
        self,
        event_id: str,
        *,
        source: str,
        event_type: str,
        event_created: datetime | None,
        outcome: str,
    ) -> bool:
        """Record an event as handled; False if it already was (another run got there first)."""
        t = models.processed_events
        stmt = (
            _insert(self.conn, t)
            .values(
                event_id=event_id,
                source=source,
                event_type=event_type,
                event_created=event_created,
                outcome=outcome,
                processed_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=[t.c.event_id])
        )
        return self.conn.execute(stmt).rowcount == 1

    # --- webhook inbox (stripe_sitecore.webhooks) -------------------------------------------
    def add_to_inbox(
        self,
        *,
        event_id: str,
        source: str,
        event_type: str,
        event_created: datetime,
        body: dict[str, Any],
        object_id: str | None = None,
        payment_intent_id: str | None = None,
    ) -> bool:
        """Keep a webhook delivery once per event id; False if the event was already there."""
        t = models.webhook_inbox
        stmt = (
            _insert(self.conn, t)
            .values(
                event_id=event_id,
                source=source,
                event_type=event_type,
                event_created=event_created,
                received_at=utcnow(),
                object_id=object_id,
                payment_intent_id=payment_intent_id,
                body=body,
            )
            .on_conflict_do_nothing(index_elements=[t.c.event_id])
        )
        return self.conn.execute(stmt).rowcount == 1

    def inbox_events(
        self, source: str, created_gte: datetime, created_lt: datetime
    ) -> list[dict[str, Any]]:
        """Bodies of the source's inbox events created in ``[created_gte, created_lt)``, oldest
        first."""
        t = models.webhook_inbox
        rows = self.conn.scalars(
            sa.select(t.c.body)
            .where(
                t.c.source == source,
                t.c.event_created >= created_gte,
                t.c.event_created < created_lt,
            )
            .order_by(t.c.event_created, t.c.event_id)
        )
        return list(rows)

    def inbox_object_ids(
        self, source: str, created_gte: datetime, created_lt: datetime
    ) -> list[str]:
        """The distinct objects (e.g. OrderCloud order ids) the source's inbox deliveries created
        in ``[created_gte, created_lt)`` name, sorted."""
        t = models.webhook_inbox
        rows = self.conn.scalars(
            sa.select(t.c.object_id)
            .where(
                t.c.source == source,
                t.c.object_id.is_not(None),
                t.c.event_created >= created_gte,
                t.c.event_created < created_lt,
            )
            .distinct()
            .order_by(t.c.object_id)
        )
        return list(rows)

    def forget_events_before(self, instant: datetime) -> dict[str, int]:
        """Delete processed-event ids and inbox deliveries of events created before ``instant``;
        returns how many of each. Only for ids that can no longer come back (see the caller)."""
        deleted = {}
        for table in (models.processed_events, models.webhook_inbox):
            result = self.conn.execute(sa.delete(table).where(table.c.event_created < instant))
            deleted[table.name] = result.rowcount
        return deleted

    def count_inbox(self, source: str | None = None) -> int:
        t = models.webhook_inbox
        query = sa.select(sa.func.count()).select_from(t)
        if source is not None:
            query = query.where(t.c.source == source)
        return self.conn.scalar(query) or 0

    # --- order links ------------------------------------------------------------------
    def get_order_link(self, backend: str, order_id: str) -> OrderLink | None:
        t = models.order_links
        row = self.conn.execute(
            sa.select(t).where(t.c.backend == backend, t.c.order_id == order_id)
        ).one_or_none()
        return OrderLink(**row._mapping) if row else None

    def link_order(
        self,
        *,
        backend: str,
        order_id: str,
        payment_intent_id: str,
        amount_minor: int,
        currency: str,
        stripe_customer_id: str | None = None,
        state: str = "awaiting_payment",
    ) -> OrderLink:
        """Link an order to its PaymentIntent; an existing link keeps its state."""
        t = models.order_links
        now = utcnow()
        stmt = _insert(self.conn, t).values(
            backend=backend,
            order_id=order_id,
            payment_intent_id=payment_intent_id,
            stripe_customer_id=stripe_customer_id,
            state=state,
            amount_minor=amount_minor,
            currency=currency.lower(),
            created_at=now,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.backend, t.c.order_id],
            set_={
                "payment_intent_id": stmt.excluded.payment_intent_id,
                "amount_minor": stmt.excluded.amount_minor,
                "currency": stmt.excluded.currency,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        self.conn.execute(stmt)
        link = self.get_order_link(backend, order_id)
        assert link is not None
        return link

    def advance_order_state(
        self, backend: str, order_id: str, state: str, *, latest_charge_id: str | None = None
    ) -> bool:
        """Move the order's ledger state forward only; False if it would go backwards."""
        if state not in ORDER_STATE_RANK:
            raise ValueError(f"unknown order state {state!r}")
        t = models.order_links
        lower_states = [
            s for s, rank in ORDER_STATE_RANK.items() if rank <= ORDER_STATE_RANK[state]
        ]
        values: dict[str, Any] = {"state": state, "updated_at": utcnow()}
        if latest_charge_id is not None:
            values["latest_charge_id"] = latest_charge_id
        result = self.conn.execute(
            sa.update(t)
            .where(t.c.backend == backend, t.c.order_id == order_id, t.c.state.in_(lower_states))
            .values(**values)
        )
        return result.rowcount == 1

    # --- outbox -----------------------------------------------------------------------
    def enqueue(self, topic: str, message_key: str, payload: dict[str, Any]) -> bool:
        """Add a message once per (topic, key); False if it was already queued."""
        t = models.outbox
        now = utcnow()
        stmt = (
            _insert(self.conn, t)
            .values(
                topic=topic,
                message_key=message_key,
                payload=payload,
                status="pending",
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[t.c.topic, t.c.message_key])
        )
        return self.conn.execute(stmt).rowcount == 1

    def pending_messages(self, topic: str, limit: int = 100) -> list[OutboxMessage]:
        t = models.outbox
        rows = self.conn.execute(
            sa.select(t.c.id, t.c.topic, t.c.message_key, t.c.payload, t.c.status, t.c.attempts)
            .where(t.c.topic == topic, t.c.status == "pending")
            .order_by(t.c.id)
            .limit(limit)
        )
        return [OutboxMessage(**row._mapping) for row in rows]

    def message_status(self, topic: str, message_key: str) -> str | None:
        """``pending``, ``done`` or ``dead`` for the message, None when there is none."""
        t = models.outbox
        return self.conn.scalar(
            sa.select(t.c.status).where(t.c.topic == topic, t.c.message_key == message_key)
        )

    def finish_message(self, message_id: int, *, error: str | None = None, give_up: bool = False):
        """Mark a delivery attempt: done on success, pending or dead after a failure."""
        t = models.outbox
        status = "done" if error is None else ("dead" if give_up else "pending")
        self.conn.execute(
            sa.update(t)
            .where(t.c.id == message_id)
            .values(
                status=status,
                attempts=t.c.attempts + 1,
                last_error=error,
                updated_at=utcnow(),
            )
        )

    # --- dead letters -----------------------------------------------------------------
    def quarantine(
        self,
        *,
        source: str,
        record_key: str,
        record: dict[str, Any],
        rule: str,
        reason: str,
        request_digest: str | None = None,
    ) -> None:
        """Dead-letter a record; seeing the same failure again bumps attempts and last_seen.

        ``request_digest``: of a request the other side refused, so it is not sent again as is.
        """
        t = models.dead_letters
        now = utcnow()
        stmt = _insert(self.conn, t).values(
            source=source,
            record_key=record_key,
            record=record,
            rule=rule,
            reason=reason,
            first_seen=now,
            last_seen=now,
            attempts=1,
            status="open",
            request_digest=request_digest,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.source, t.c.record_key, t.c.rule],
            set_={
                "record": stmt.excluded.record,
                "reason": stmt.excluded.reason,
                "last_seen": stmt.excluded.last_seen,
                "attempts": t.c.attempts + 1,
                "status": "open",
                "request_digest": stmt.excluded.request_digest,
            },
        )
        self.conn.execute(stmt)

    def refused_requests(self, source: str, record_keys: Iterable[str]) -> dict[str, set[str]]:
        """Digests of the requests refused for good for these records, per record key (open
        dead letters only: a resolved one was fixed, or replayed)."""
        t = models.dead_letters
        keys = list(record_keys)
        if not keys:
            return {}
        rows = self.conn.execute(
            sa.select(t.c.record_key, t.c.request_digest).where(
                t.c.source == source,
                t.c.status == "open",
                t.c.request_digest.is_not(None),
                t.c.record_key.in_(keys),
            )
        )
        refused: dict[str, set[str]] = {}
        for key, digest in rows:
            refused.setdefault(key, set()).add(digest)
        return refused

    # --- installation facts ------------------------------------------------------------
    def instance_id(self) -> str:
        """This installation's random id (made by migration 0006)."""
        t = models.state_meta
        value = self.conn.scalar(sa.select(t.c.value).where(t.c.key == "instance_id"))
        if value is None:
            raise RuntimeError("state database has no instance_id: run the migrations")
        return value

    def open_dead_letters(self, source: str | None = None) -> list[dict[str, Any]]:
        t = models.dead_letters
        query = sa.select(t).where(t.c.status == "open").order_by(t.c.id)
        if source is not None:
            query = query.where(t.c.source == source)
        return [dict(row._mapping) for row in self.conn.execute(query)]

    # --- dead letters: inspection and replay (stripe_sitecore.dead_letters) ---------------
    def list_dead_letters(
        self,
        *,
        source: str | None = None,
        rule: str | None = None,
        status: str | None = "open",
        since: datetime | None = None,
        until: datetime | None = None,
        ids: Iterable[int] | None = None,
        record_keys: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        """Dead letters matching every filter given, oldest first; ``status=None`` means any.

        ``since`` and ``until`` bound ``last_seen``, the last time the record failed: ``[since,
        until)``.
        """
        t = models.dead_letters
        query = sa.select(t).order_by(t.c.id)
        for column, value in ((t.c.source, source), (t.c.rule, rule), (t.c.status, status)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(t.c.last_seen >= since)
        if until is not None:
            query = query.where(t.c.last_seen < until)
        if ids is not None:
            query = query.where(t.c.id.in_(list(ids)))
        if record_keys is not None:
            query = query.where(t.c.record_key.in_(list(record_keys)))
        if limit is not None:
            query = query.limit(limit)
        return [DeadLetter(**row._mapping) for row in self.conn.execute(query)]

    def get_dead_letter(self, dead_letter_id: int) -> DeadLetter | None:
        t = models.dead_letters
        row = self.conn.execute(sa.select(t).where(t.c.id == dead_letter_id)).one_or_none()
        return DeadLetter(**row._mapping) if row else None

    def page_dead_letters(
        self,
        *,
        source: str | None = None,
        status: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[DeadLetter], int]:
        """One page of dead letters, most recently failed first, and how many match in all.

        For browsing (the UI plugin); ``None`` filters mean any.
        """
        t = models.dead_letters
        where = [
            column == value
            for column, value in ((t.c.source, source), (t.c.status, status))
            if value is not None
        ]
        total = self.conn.execute(sa.select(sa.func.count()).select_from(t).where(*where)).scalar()
        query = (
            sa.select(t)
            .where(*where)
            .order_by(t.c.last_seen.desc(), t.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return [DeadLetter(**row._mapping) for row in self.conn.execute(query)], int(total or 0)

    def dead_letter_sources(self) -> list[str]:
        """Every source that has dead letters, of any status, sorted."""
        t = models.dead_letters
        return list(
            self.conn.execute(sa.select(t.c.source).distinct().order_by(t.c.source)).scalars()
        )

    def count_open_dead_letters(self) -> dict[str, int]:
        """Open dead letters per source."""
        t = models.dead_letters
        rows = self.conn.execute(
            sa.select(t.c.source, sa.func.count()).where(t.c.status == "open").group_by(t.c.source)
        )
        return {source: count for source, count in rows}

    def set_dead_letter_status(self, ids: Iterable[int], status: str) -> int:
        """Close (``resolved``, ``superseded``) or reopen (``open``) dead letters; returns rows."""
        if status not in DEAD_LETTER_STATUSES:
            raise ValueError(f"dead letter status {status!r} not in {DEAD_LETTER_STATUSES}")
        t = models.dead_letters
        ids = list(ids)
        if not ids:
            return 0
        result = self.conn.execute(
            sa.update(t).where(t.c.id.in_(ids)).values(status=status, last_seen=utcnow())
        )
        return result.rowcount

    def record_dead_letter_attempt(self, dead_letter_id: int, reason: str) -> None:
        """A replay that failed again without re-quarantining: bump attempts, keep it open."""
        t = models.dead_letters
        self.conn.execute(
            sa.update(t)
            .where(t.c.id == dead_letter_id)
            .values(
                reason=reason,
                attempts=t.c.attempts + 1,
                last_seen=utcnow(),
                status="open",
            )
        )

    # --- cursors, listed (alerting.checks) ----------------------------------------------
    def list_cursors(self) -> list[Cursor]:
        t = models.sync_cursors
        rows = self.conn.execute(sa.select(t).order_by(t.c.stream))
        return [Cursor(**row._mapping) for row in rows]

    def delete_cursor(self, stream: str) -> None:
        t = models.sync_cursors
        self.conn.execute(sa.delete(t).where(t.c.stream == stream))

    # --- customer links (flows.customers) -------------------------------------------------
    def get_customer_link(self, backend: str, user_id: str) -> CustomerLink | None:
        t = models.customer_links
        row = self.conn.execute(
            sa.select(t).where(t.c.backend == backend, t.c.user_id == user_id)
        ).one_or_none()
        return CustomerLink(**row._mapping) if row else None

    def get_customer_link_by_customer(self, stripe_customer_id: str) -> CustomerLink | None:
        t = models.customer_links
        row = self.conn.execute(
            sa.select(t).where(t.c.stripe_customer_id == stripe_customer_id)
        ).one_or_none()
        return CustomerLink(**row._mapping) if row else None

    def list_customer_links(self, backend: str) -> list[CustomerLink]:
        t = models.customer_links
        rows = self.conn.execute(sa.select(t).where(t.c.backend == backend).order_by(t.c.user_id))
        return [CustomerLink(**row._mapping) for row in rows]

    def link_customer(
        self,
        *,
        backend: str,
        user_id: str,
        stripe_customer_id: str,
        sitecore_hashes: dict[str, str] | None = None,
        stripe_hashes: dict[str, str] | None = None,
        content_hash: str | None = None,
        buyer_id: str | None = None,
    ) -> CustomerLink:
        """Link a user to a customer, active; relinking to another customer (or reviving an
        inactive link) replaces the hashes, so the next sync compares both sides afresh."""
        t = models.customer_links
        now = utcnow()
        values = {
            "stripe_customer_id": stripe_customer_id,
            "content_hash": content_hash,
            "status": "active",
            "status_reason": None,
            "sitecore_hashes": sitecore_hashes,
            "stripe_hashes": stripe_hashes,
            "synced_at": now if sitecore_hashes is not None else None,
            "updated_at": now,
        }
        stmt = _insert(self.conn, t).values(
            backend=backend, user_id=user_id, buyer_id=buyer_id, created_at=now, **values
        )
        # A relink that does not know the buyer keeps the one on record.
        values["buyer_id"] = sa.func.coalesce(stmt.excluded.buyer_id, t.c.buyer_id)
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.backend, t.c.user_id], set_=values)
        self.conn.execute(stmt)
        link = self.get_customer_link(backend, user_id)
        assert link is not None
        return link

    def record_customer_sync(
        self,
        backend: str,
        user_id: str,
        *,
        sitecore_hashes: dict[str, str],
        stripe_hashes: dict[str, str],
        content_hash: str,
        buyer_id: str | None = None,
    ) -> None:
        """Both sides as they are now that the pair is in step."""
        t = models.customer_links
        now = utcnow()
        self.conn.execute(
            sa.update(t)
            .where(t.c.backend == backend, t.c.user_id == user_id)
            .values(
                sitecore_hashes=sitecore_hashes,
                stripe_hashes=stripe_hashes,
                content_hash=content_hash,
                buyer_id=sa.func.coalesce(buyer_id, t.c.buyer_id),
                synced_at=now,
                updated_at=now,
            )
        )

    def set_customer_link_status(
        self, backend: str, user_id: str, status: str, reason: str | None = None
    ) -> None:
        if status not in CUSTOMER_LINK_STATUSES:
            raise ValueError(f"customer link status {status!r} not in {CUSTOMER_LINK_STATUSES}")
        t = models.customer_links
        self.conn.execute(
            sa.update(t)
            .where(t.c.backend == backend, t.c.user_id == user_id)
            .values(status=status, status_reason=reason, updated_at=utcnow())
        )


class StateStore:
    """The integration's state database: an engine plus migrations and transactions."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> StateStore:
        engine = sa.create_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        return cls(engine)

    @contextmanager
    def begin(self) -> Iterator[StateTx]:
        with self.engine.begin() as conn:
            yield StateTx(conn)

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (idempotent), under the migration lock,
        so concurrent callers are safe (``stripe_sitecore.store.migrate``)."""
        from stripe_sitecore.store.migrate import upgrade

        upgrade(self.engine, revision)

    def current_revision(self) -> str | None:
        """The revision the database is at; None when it was never migrated."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the scheduler, the API server and task processes read while one task writes;
    # the busy timeout makes concurrent writers wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# active: kept in step; deactivated: one side was deactivated or deleted and the other side was
# told (a reactivated Sitecore user makes it active again); unlinked: no longer synced, kept as a
# tombstone so the sync does not pair the two again on its own.
CUSTOMER_LINK_STATUSES = ("active", "deactivated", "unlinked")


@dataclass(frozen=True)
class CustomerLink:
    backend: str
    user_id: str
    stripe_customer_id: str
    content_hash: str | None
    created_at: datetime
    updated_at: datetime
    status: str
    status_reason: str | None
    buyer_id: str | None
    sitecore_hashes: dict[str, str] | None
    stripe_hashes: dict[str, str] | None
    synced_at: datetime | None
