"""Webhook inbox: signed Stripe and OrderCloud deliveries, one row per event id.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from stripe_sitecore.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_inbox",
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("source", sa.String(50), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("event_created", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("object_id", sa.String(255)),
        sa.Column("payment_intent_id", sa.String(255)),
        sa.Column("body", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_webhook_inbox"),
    )
    op.create_index(
        "ix_webhook_inbox_source_event_created", "webhook_inbox", ["source", "event_created"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_inbox_source_event_created", table_name="webhook_inbox")
    op.drop_table("webhook_inbox")
