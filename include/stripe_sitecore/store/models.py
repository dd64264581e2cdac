"""Tables of the integration's own state database (SQLAlchemy Core).

The Alembic migrations in ``migrations/versions`` create exactly these; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa


class UTCDateTime(sa.types.TypeDecorator):
    """Timestamps stored as naive UTC and read back as aware UTC, on SQLite and PostgreSQL alike."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the state store keeps UTC instants only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)

sync_cursors = sa.Table(
    "sync_cursors",
    metadata,
    sa.Column("stream", sa.String(200), primary_key=True),
    sa.Column("position", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("source", sa.String(50), nullable=False),
    sa.Column("event_type", sa.String(200), nullable=False),
    sa.Column("event_created", UTCDateTime),
    sa.Column("outcome", sa.String(50), nullable=False),
    sa.Column("processed_at", UTCDateTime, nullable=False),
)

order_links = sa.Table(
    "order_links",
    metadata,
    sa.Column("backend", sa.String(30), primary_key=True),
    sa.Column("order_id", sa.String(255), primary_key=True),
    sa.Column("payment_intent_id", sa.String(255), unique=True),
    sa.Column("stripe_customer_id", sa.String(255)),
    sa.Column("latest_charge_id", sa.String(255)),
    sa.Column("state", sa.String(40), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

customer_links = sa.Table(
    "customer_links",
    metadata,
    sa.Column("backend", sa.String(30), primary_key=True),
    sa.Column("user_id", sa.String(255), primary_key=True),
    sa.Column("stripe_customer_id", sa.String(255), nullable=False, unique=True),
    sa.Column("content_hash", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("message_key", sa.String(255), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("topic", "message_key"),
    sa.Index("ix_outbox_topic_status", "topic", "status"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("record_key", sa.String(255), nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("rule", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.UniqueConstraint("source", "record_key", "rule"),
    sa.Index("ix_dead_letters_status", "status"),
)
