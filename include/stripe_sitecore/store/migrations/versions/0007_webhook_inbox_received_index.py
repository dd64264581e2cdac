"""Index webhook_inbox by received_at: the real-time trigger asks for the newest delivery twice
a second (stripe_sitecore.realtime).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_webhook_inbox_received_at", "webhook_inbox", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_inbox_received_at", table_name="webhook_inbox")
