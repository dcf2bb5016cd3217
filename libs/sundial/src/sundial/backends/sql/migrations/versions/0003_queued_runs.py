"""Runs can wait for a worker: the queue a run waits in, and when it may start.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sundial_runs") as table:
        table.add_column(sa.Column("queue", sa.String(63)))
        table.add_column(sa.Column("due_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("sundial_runs") as table:
        table.drop_column("due_at")
        table.drop_column("queue")
