"""Initial state schema: cursors, processed events, order and customer links, outbox, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from stripe_sitecore.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "sync_cursors",
        sa.Column("stream", sa.String(200), nullable=False),
        sa.Column("position", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("stream", name="pk_sync_cursors"),
    )
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("source", sa.String(50), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("event_created", UTCDateTime),
        sa.Column("outcome", sa.String(50), nullable=False),
        sa.Column("processed_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_processed_events"),
    )
    op.create_table(
        "order_links",
        sa.Column("backend", sa.String(30), nullable=False),
        sa.Column("order_id", sa.String(255), nullable=False),
        sa.Column("payment_intent_id", sa.String(255)),
        sa.Column("stripe_customer_id", sa.String(255)),
        sa.Column("latest_charge_id", sa.String(255)),
        sa.Column("state", sa.String(40), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("backend", "order_id", name="pk_order_links"),
        sa.UniqueConstraint("payment_intent_id", name="uq_order_links_payment_intent_id"),
    )
    op.create_table(
        "customer_links",
        sa.Column("backend", sa.String(30), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("stripe_customer_id", sa.String(255), nullable=False),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("backend", "user_id", name="pk_customer_links"),
        sa.UniqueConstraint("stripe_customer_id", name="uq_customer_links_stripe_customer_id"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("message_key", sa.String(255), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("topic", "message_key", name="uq_outbox_topic_message_key"),
    )
    op.create_index("ix_outbox_topic_status", "outbox", ["topic", "status"])
    op.create_table(
        "dead_letters",
        sa.Column("id", BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("record_key", sa.String(255), nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
        sa.UniqueConstraint(
            "source", "record_key", "rule", name="uq_dead_letters_source_record_key_rule"
        ),
    )
    op.create_index("ix_dead_letters_status", "dead_letters", ["status"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_status", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index("ix_outbox_topic_status", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("customer_links")
    op.drop_table("order_links")
    op.drop_table("processed_events")
    op.drop_table("sync_cursors")
