"""Initial schema: catalog, runs, claims, summaries, commands, instances, lease, job store.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Migrations are frozen history: they spell out their own column types rather than
# importing the live table definitions, which will move on.
ID = sa.String(191)
WHEN = sa.DateTime(timezone=True)
DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sundial_jobs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("next_run_time", WHEN),
        sa.Column("doc", DOC, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_index("ix_sundial_jobs_state", "sundial_jobs", ["state", "id"])
    op.create_table(
        "sundial_job_tags",
        sa.Column("job_id", ID, primary_key=True),
        sa.Column("tag", ID, primary_key=True),
    )
    op.create_index("ix_sundial_job_tags_tag", "sundial_job_tags", ["tag", "job_id"])

    op.create_table(
        "sundial_runs",
        sa.Column("run_id", ID, primary_key=True),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("scheduled_time", WHEN, nullable=False),
        sa.Column("started_at", WHEN),
        sa.Column("finished_at", WHEN),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("manual", sa.Boolean, nullable=False),
        sa.Column("error_type", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("traceback", sa.Text),
        sa.Column("instance_id", ID, nullable=False),
    )
    op.create_index(
        "ix_sundial_runs_job_newest", "sundial_runs", ["job_id", "scheduled_time", "run_id"]
    )
    op.create_index("ix_sundial_runs_newest", "sundial_runs", ["scheduled_time", "run_id"])
    op.create_index(
        "ix_sundial_runs_outcome", "sundial_runs", ["outcome", "scheduled_time", "run_id"]
    )

    op.create_table(
        "sundial_run_claims",
        sa.Column("job_id", ID, primary_key=True),
        sa.Column("scheduled_time", WHEN, primary_key=True),
        sa.Column("instance_id", ID, nullable=False),
        sa.Column("claimed_at", WHEN, nullable=False),
    )
    op.create_index("ix_sundial_run_claims_time", "sundial_run_claims", ["scheduled_time"])

    op.create_table(
        "sundial_run_summaries",
        sa.Column("job_id", ID, primary_key=True),
        sa.Column("last_run_at", WHEN),
        sa.Column("last_outcome", sa.String(16)),
        sa.Column("last_duration_seconds", sa.Float),
        sa.Column("last_success_at", WHEN),
        sa.Column("last_failure_at", WHEN),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("last_finished_at", WHEN),
        sa.Column("last_success_finished_at", WHEN),
    )

    op.create_table(
        "sundial_commands",
        sa.Column("id", ID, primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("payload", DOC, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN),
    )
    op.create_index("ix_sundial_commands_pending", "sundial_commands", ["state", "created_at"])

    op.create_table(
        "sundial_instances",
        sa.Column("id", ID, primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("last_seen", WHEN, nullable=False),
    )

    op.create_table(
        "sundial_leader_lease",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", ID),
        sa.Column("expires_at", WHEN),
    )

    # The columns APScheduler's SQLAlchemyJobStore declares, so that its own
    # create-if-missing finds the table already there.
    op.create_table(
        "sundial_apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25)),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "ix_sundial_apscheduler_jobs_next_run_time",
        "sundial_apscheduler_jobs",
        ["next_run_time"],
    )


def downgrade() -> None:
    for table in (
        "sundial_apscheduler_jobs",
        "sundial_leader_lease",
        "sundial_instances",
        "sundial_commands",
        "sundial_run_summaries",
        "sundial_run_claims",
        "sundial_runs",
        "sundial_job_tags",
        "sundial_jobs",
    ):
        op.drop_table(table)
