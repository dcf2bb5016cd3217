"""Run summaries date last success by its finish; the separate finish column goes.

``last_success_at`` held the start of the last successful run and
``last_success_finished_at`` its finish (to order late arrivals). The summary now dates
both last success and last failure by when the run ended, so the finish moves into
``last_success_at``. A stored ``last_failure_at`` keeps its start time until the job
next fails: the finish of that run was never stored.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.execute(
        "UPDATE sundial_run_summaries SET last_success_at = last_success_finished_at"
        " WHERE last_success_finished_at IS NOT NULL"
    )
    with op.batch_alter_table("sundial_run_summaries") as table:
        table.drop_column("last_success_finished_at")


def downgrade() -> None:
    with op.batch_alter_table("sundial_run_summaries") as table:
        table.add_column(sa.Column("last_success_finished_at", WHEN))
    op.execute("UPDATE sundial_run_summaries SET last_success_finished_at = last_success_at")
