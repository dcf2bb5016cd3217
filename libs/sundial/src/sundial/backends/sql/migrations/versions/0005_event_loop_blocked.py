"""Runs record how long an async job blocked the event loop.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sundial_runs") as table:
        table.add_column(
            sa.Column("event_loop_blocked_seconds", sa.Float, nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("sundial_runs") as table:
        table.drop_column("event_loop_blocked_seconds")
