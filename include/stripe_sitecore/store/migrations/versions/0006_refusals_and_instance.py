"""Refused requests' digests on dead letters; the installation's random instance id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("request_digest", sa.String(64)))
    state_meta = op.create_table(
        "state_meta",
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_state_meta"),
    )
    op.bulk_insert(state_meta, [{"key": "instance_id", "value": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("state_meta")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("request_digest")
