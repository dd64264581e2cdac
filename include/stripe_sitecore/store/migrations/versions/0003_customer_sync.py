"""Customer sync: per-field content hashes of both sides, a status and the buyer of each link.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from stripe_sitecore.store.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing links (made before this revision) read as active with no hashes: the next
    # customer_sync run compares both sides afresh, as for a new link.
    op.add_column(
        "customer_links",
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
    )
    op.add_column("customer_links", sa.Column("status_reason", sa.String(40)))
    op.add_column("customer_links", sa.Column("buyer_id", sa.String(100)))
    op.add_column("customer_links", sa.Column("sitecore_hashes", sa.JSON))
    op.add_column("customer_links", sa.Column("stripe_hashes", sa.JSON))
    op.add_column("customer_links", sa.Column("synced_at", UTCDateTime))


def downgrade() -> None:
    # Batch mode: SQLite before 3.35 cannot drop columns in place.
    with op.batch_alter_table("customer_links") as batch:
        for name in (
            "synced_at",
            "stripe_hashes",
            "sitecore_hashes",
            "buyer_id",
            "status_reason",
            "status",
        ):
            batch.drop_column(name)
