"""Instances record the workers' queues they take runs from.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("sundial_instances") as table:
        table.add_column(sa.Column("queues", document, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("sundial_instances") as table:
        table.drop_column("queues")
