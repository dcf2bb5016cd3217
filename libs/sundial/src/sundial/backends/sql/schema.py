"""Sundial's tables, as the live code reads and writes them (migrations spell out their own).

Column names match the fields of ``Run``, ``Command`` and ``Instance``: rows map straight
onto the models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from sundial.constants import MAX_ID_CHARS

#: APScheduler's own job store table (pickled jobs; only the leader reads it)
JOBSTORE_TABLE = "sundial_apscheduler_jobs"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps them naive, always in UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}; Sundial stores aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_ID = sa.String(MAX_ID_CHARS)
_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
metadata = sa.MetaData()

jobs = sa.Table(
    "sundial_jobs",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("next_run_time", UtcDateTime()),
    sa.Column("doc", _DOC, nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)
job_tags = sa.Table(
    "sundial_job_tags",
    metadata,
    sa.Column("job_id", _ID, primary_key=True),
    sa.Column("tag", _ID, primary_key=True),
)
runs = sa.Table(
    "sundial_runs",
    metadata,
    sa.Column("run_id", _ID, primary_key=True),
    sa.Column("job_id", _ID, nullable=False),
    sa.Column("scheduled_time", UtcDateTime(), nullable=False),
    sa.Column("started_at", UtcDateTime()),
    sa.Column("finished_at", UtcDateTime()),
    sa.Column("duration_seconds", sa.Float),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("manual", sa.Boolean, nullable=False),
    sa.Column("error_type", sa.Text),
    sa.Column("error_message", sa.Text),
    sa.Column("traceback", sa.Text),
    sa.Column("instance_id", _ID, nullable=False),
    sa.Column("queue", sa.String(63)),
    sa.Column("due_at", UtcDateTime()),
    sa.Column("event_loop_blocked_seconds", sa.Float, nullable=False, server_default="0"),
)
claims = sa.Table(
    "sundial_run_claims",
    metadata,
    sa.Column("job_id", _ID, primary_key=True),
    sa.Column("scheduled_time", UtcDateTime(), primary_key=True),
    sa.Column("instance_id", _ID, nullable=False),
    sa.Column("claimed_at", UtcDateTime(), nullable=False),
)
# The columns of history.StoredSummary.
summaries = sa.Table(
    "sundial_run_summaries",
    metadata,
    sa.Column("job_id", _ID, primary_key=True),
    sa.Column("last_run_at", UtcDateTime()),
    sa.Column("last_outcome", sa.String(16)),
    sa.Column("last_duration_seconds", sa.Float),
    sa.Column("last_success_at", UtcDateTime()),
    sa.Column("last_failure_at", UtcDateTime()),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("last_finished_at", UtcDateTime()),
)
commands = sa.Table(
    "sundial_commands",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("job_id", _ID, nullable=False),
    sa.Column("payload", _DOC, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime()),
)
instances = sa.Table(
    "sundial_instances",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("last_seen", UtcDateTime(), nullable=False),
    sa.Column("queues", _DOC, nullable=False, server_default="[]"),
)
lease = sa.Table(
    "sundial_leader_lease",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", _ID),
    sa.Column("expires_at", UtcDateTime()),
)
