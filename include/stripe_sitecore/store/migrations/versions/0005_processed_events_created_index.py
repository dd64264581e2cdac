"""Index processed_events by event_created, for forgetting ids that can no longer come back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_processed_events_event_created", "processed_events", ["event_created"])


def downgrade() -> None:
    op.drop_index("ix_processed_events_event_created", table_name="processed_events")
