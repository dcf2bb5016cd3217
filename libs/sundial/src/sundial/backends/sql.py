"""Postgres and SQLite backend: SQLAlchemy 2 Core over psycopg 3 or the sqlite3 module.

Both dialects share one code path. Where they differ: Postgres wakes the leader with
LISTEN/NOTIFY and elects it with a session advisory lock on a dedicated connection;
SQLite (one machine, no server) polls for commands and elects with a lease row.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from psycopg.conninfo import make_conninfo
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Dialect, Engine

from sundial.backends.base import Backend, BackendError, RunCursor
from sundial.models import (
    Command,
    CommandState,
    Instance,
    JobState,
    JobView,
    Outcome,
    Run,
    RunSummary,
    utcnow,
)

NOTIFY_CHANNEL = "sundial_commands"
# Advisory lock keys are global to a Postgres database: fixed, distinctive constants
# ("SUNDIAL" and a suffix) so they do not collide with an application's own locks.
LEADER_LOCK_KEY = 0x53554E4449414C01
MIGRATION_LOCK_KEY = 0x53554E4449414C02
CONNECT_TIMEOUT_SECONDS = 5
# The leader's connection must notice a dead server or network within seconds, or a
# partitioned leader would keep believing it holds the lock.
KEEPALIVES: dict[str, str | int | None] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}
# The same on the server's side of the leader's connection: the advisory lock is held
# until Postgres sees the session end, which for a host that died or dropped off the
# network would otherwise take the server's default keepalive time (often 2 hours).
# Set per session with SET (not a startup option, which poolers reject).
SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"
)
# Long enough to ride out the other process's write transaction, short enough that a
# stuck writer shows up as an error rather than a hang.
SQLITE_BUSY_TIMEOUT_SECONDS = 30
SQLITE_POLL_SECONDS = 0.5
#: claims are won with INSERT … RETURNING, which SQLite has from 3.35
SQLITE_MIN_VERSION = (3, 35)
LEASE_NAME = "leader"
#: the lease row a Postgres leader stamps next to its advisory lock
PG_LEASE_NAME = "postgres-leader"
STALE_LOCK_RETRIES = 10
STALE_LOCK_RETRY_SECONDS = 0.05
JOBSTORE_TABLE = "sundial_apscheduler_jobs"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Keeps IN (...) lists well under every driver's bound-parameter limit.
IN_CHUNK = 500
FAILED_OUTCOMES = frozenset({Outcome.FAILURE, Outcome.TIMEOUT})
_READ_ONLY = "sundial_read_only"
# SQLAlchemy reports an INSERT's row count only when asked to keep it.
_COUNT_ROWS = {"preserve_rowcount": True}

_T = TypeVar("_T")


class _UtcDateTime(sa.TypeDecorator[datetime]):
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


_ID = sa.String(191)
_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_metadata = sa.MetaData()

_jobs = sa.Table(
    "sundial_jobs",
    _metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("next_run_time", _UtcDateTime()),
    sa.Column("doc", _DOC, nullable=False),
    sa.Column("updated_at", _UtcDateTime(), nullable=False),
)
_job_tags = sa.Table(
    "sundial_job_tags",
    _metadata,
    sa.Column("job_id", _ID, primary_key=True),
    sa.Column("tag", _ID, primary_key=True),
)
# Column names match the fields of Run, Command and Instance: rows map straight onto them.
_runs = sa.Table(
    "sundial_runs",
    _metadata,
    sa.Column("run_id", _ID, primary_key=True),
    sa.Column("job_id", _ID, nullable=False),
    sa.Column("scheduled_time", _UtcDateTime(), nullable=False),
    sa.Column("started_at", _UtcDateTime()),
    sa.Column("finished_at", _UtcDateTime()),
    sa.Column("duration_seconds", sa.Float),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("manual", sa.Boolean, nullable=False),
    sa.Column("error_type", sa.Text),
    sa.Column("error_message", sa.Text),
    sa.Column("traceback", sa.Text),
    sa.Column("instance_id", _ID, nullable=False),
)
_claims = sa.Table(
    "sundial_run_claims",
    _metadata,
    sa.Column("job_id", _ID, primary_key=True),
    sa.Column("scheduled_time", _UtcDateTime(), primary_key=True),
    sa.Column("instance_id", _ID, nullable=False),
    sa.Column("claimed_at", _UtcDateTime(), nullable=False),
)
_summaries = sa.Table(
    "sundial_run_summaries",
    _metadata,
    sa.Column("job_id", _ID, primary_key=True),
    sa.Column("last_run_at", _UtcDateTime()),
    sa.Column("last_outcome", sa.String(16)),
    sa.Column("last_duration_seconds", sa.Float),
    sa.Column("last_success_at", _UtcDateTime()),
    sa.Column("last_failure_at", _UtcDateTime()),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    # Finish times of the runs behind last_* and last_success_*: a run that arrives
    # late (an older batch retried) must not overwrite a newer one.
    sa.Column("last_finished_at", _UtcDateTime()),
    sa.Column("last_success_finished_at", _UtcDateTime()),
)
_commands = sa.Table(
    "sundial_commands",
    _metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("job_id", _ID, nullable=False),
    sa.Column("payload", _DOC, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", _UtcDateTime(), nullable=False),
    sa.Column("finished_at", _UtcDateTime()),
)
_instances = sa.Table(
    "sundial_instances",
    _metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("started_at", _UtcDateTime(), nullable=False),
    sa.Column("last_seen", _UtcDateTime(), nullable=False),
)
_lease = sa.Table(
    "sundial_leader_lease",
    _metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", _ID),
    sa.Column("expires_at", _UtcDateTime()),
)
_SUMMARY_COLUMNS = tuple(c.name for c in _summaries.columns if c.name != "job_id")


class SqlBackend(Backend):
    """Sundial's shared state in Postgres (``postgresql+psycopg://``) or SQLite."""

    def __init__(self, url: str) -> None:
        self._url = _normalise_url(url)
        self.kind = "postgres" if self._url.get_backend_name() == "postgresql" else "sqlite"
        self._safe_url = self._url.render_as_string(hide_password=True)
        self._engine = _postgres_engine(self._url) if self._postgres else _sqlite_engine(self._url)
        # Connections of their own, outside the pool, for LISTEN and the leader lock
        # (Postgres only; opened on first use).
        conninfo = (
            make_conninfo(
                self._url.set(drivername="postgresql").render_as_string(hide_password=False),
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                **KEEPALIVES,
            )
            if self._postgres
            else ""
        )
        self._listener = _DedicatedConnection(conninfo, setup=f"LISTEN {NOTIFY_CHANNEL}")
        self._leader_conn = _DedicatedConnection(conninfo, setup=SERVER_KEEPALIVES)
        self._listen_lock = threading.Lock()
        self._leader_lock = threading.Lock()
        self._leader_id: str | None = None

    @property
    def _postgres(self) -> bool:
        return self.kind == "postgres"

    # lifecycle -------------------------------------------------------------------------
    def setup(self) -> None:
        config = AlembicConfig()
        # configparser interpolation would read a '%' in the path as a placeholder.
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        with self._begin() as conn:
            if self._postgres:
                # Held to the end of this transaction: processes starting together
                # migrate one after another instead of racing to create tables.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            config.attributes["connection"] = conn
            alembic_command.upgrade(config, "head")

    def close(self) -> None:
        if self._leader_id is not None:
            try:
                self.release_leadership(self._leader_id)
            except BackendError:
                pass  # the lease expires on its own; closing must not fail on an outage
        with self._leader_lock:
            self._leader_conn.drop()  # a standby keeps it open between attempts
        with self._listen_lock:
            self._listener.drop()
        self._engine.dispose()

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def create_jobstore(self) -> BaseJobStore:
        return SQLAlchemyJobStore(engine=self._engine, tablename=JOBSTORE_TABLE)

    # catalog ---------------------------------------------------------------------------
    def save_jobs(self, jobs: Sequence[JobView]) -> None:
        latest = {job.id: job for job in jobs}
        if not latest:
            return
        rows = [
            {
                "id": job.id,
                "state": job.state.value,
                "next_run_time": job.next_run_time,
                "doc": job.model_dump(mode="json"),
                "updated_at": job.updated_at,
            }
            for job in latest.values()
        ]
        tags = [
            {"job_id": job.id, "tag": tag}
            for job in latest.values()
            for tag in set(job.options.tags)
        ]
        with self._begin() as conn:
            conn.execute(self._upsert(_jobs, ["id"]), rows)
            for chunk in _chunks(list(latest)):
                conn.execute(sa.delete(_job_tags).where(_job_tags.c.job_id.in_(chunk)))
            if tags:
                conn.execute(sa.insert(_job_tags), tags)

    def delete_jobs(self, job_ids: Collection[str]) -> None:
        with self._begin() as conn:
            for chunk in _chunks(list(job_ids)):
                conn.execute(sa.delete(_job_tags).where(_job_tags.c.job_id.in_(chunk)))
                conn.execute(sa.delete(_jobs).where(_jobs.c.id.in_(chunk)))

    def get_job(self, job_id: str) -> JobView | None:
        with self._read() as conn:
            doc = conn.execute(sa.select(_jobs.c.doc).where(_jobs.c.id == job_id)).scalar()
        return None if doc is None else JobView.model_validate(doc)

    def list_jobs(
        self,
        *,
        state: JobState | None = None,
        tag: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[JobView]:
        query = sa.select(_jobs.c.doc).order_by(_jobs.c.id).limit(limit)
        if state is not None:
            query = query.where(_jobs.c.state == state.value)
        if tag is not None:
            tagged = sa.select(_job_tags.c.job_id).where(_job_tags.c.tag == tag)
            query = query.where(_jobs.c.id.in_(tagged))
        if after is not None:
            query = query.where(_jobs.c.id > after)
        with self._read() as conn:
            return [JobView.model_validate(doc) for doc in conn.execute(query).scalars()]

    def count_jobs(self) -> dict[JobState, int]:
        query = sa.select(_jobs.c.state, sa.func.count()).group_by(_jobs.c.state)
        counts = dict.fromkeys(JobState, 0)
        with self._read() as conn:
            for state, count in conn.execute(query):
                counts[JobState(state)] = count
        return counts

    # runs ------------------------------------------------------------------------------
    def claim_runs(
        self, claims: Sequence[tuple[str, datetime]], instance_id: str
    ) -> set[tuple[str, datetime]]:
        # Aware datetimes hash by instant, so the rows read back (in UTC) find the pairs
        # as passed in, and two spellings of one instant are one claim.
        wanted = {claim: claim for claim in claims}
        if not wanted:
            return set()
        claimed_at = utcnow()
        # In key order: two claimants inserting overlapping fire times in opposite orders
        # would each wait on a row the other inserted, and Postgres would abort one.
        rows = [
            {
                "job_id": job_id,
                "scheduled_time": scheduled_time,
                "instance_id": instance_id,
                "claimed_at": claimed_at,
            }
            for job_id, scheduled_time in sorted(wanted)
        ]
        stmt = (
            self._insert(_claims)
            .on_conflict_do_nothing(index_elements=["job_id", "scheduled_time"])
            .returning(_claims.c.job_id, _claims.c.scheduled_time)
        )
        # SQLAlchemy sends the rows as multi-row INSERTs ("insertmanyvalues"), one per
        # page of rows, in this one transaction; RETURNING lists only the rows inserted.
        with self._begin() as conn:
            return {wanted[row.job_id, row.scheduled_time] for row in conn.execute(stmt, rows)}

    def save_runs(self, runs: Sequence[Run]) -> None:
        with self._begin() as conn:
            self._save_runs(conn, runs)

    def get_run(self, run_id: str) -> Run | None:
        with self._read() as conn:
            row = conn.execute(sa.select(_runs).where(_runs.c.run_id == run_id)).first()
        return None if row is None else Run.model_validate(row._asdict())

    def list_runs(
        self,
        *,
        job_id: str | None = None,
        outcome: Outcome | None = None,
        since: datetime | None = None,
        before: RunCursor | None = None,
        limit: int = 100,
    ) -> list[Run]:
        query = (
            sa.select(_runs)
            .order_by(_runs.c.scheduled_time.desc(), _runs.c.run_id.desc())
            .limit(limit)
        )
        if job_id is not None:
            query = query.where(_runs.c.job_id == job_id)
        if outcome is not None:
            query = query.where(_runs.c.outcome == outcome.value)
        if since is not None:
            query = query.where(_runs.c.scheduled_time >= since)
        if before is not None:
            query = query.where(
                sa.or_(
                    _runs.c.scheduled_time < before.scheduled_time,
                    sa.and_(
                        _runs.c.scheduled_time == before.scheduled_time,
                        _runs.c.run_id < before.run_id,
                    ),
                )
            )
        with self._read() as conn:
            return [Run.model_validate(row._asdict()) for row in conn.execute(query)]

    def last_run(
        self, job_id: str, *, outcome: Outcome | None = None, since: datetime | None = None
    ) -> Run | None:
        # Missed and skipped runs never started: their fire time stands in for a start.
        started = sa.func.coalesce(_runs.c.started_at, _runs.c.scheduled_time)
        query = (
            sa.select(_runs)
            .where(_runs.c.job_id == job_id)
            .order_by(started.desc(), _runs.c.run_id.desc())
            .limit(1)
        )
        if outcome is not None:
            query = query.where(_runs.c.outcome == outcome.value)
        if since is not None:
            query = query.where(started >= since)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else Run.model_validate(row._asdict())

    def run_summaries(self, job_ids: Collection[str] | None = None) -> dict[str, RunSummary]:
        columns = [_summaries.c[name] for name in RunSummary.model_fields]
        queries = (
            [sa.select(*columns)]
            if job_ids is None
            else [
                sa.select(*columns).where(_summaries.c.job_id.in_(chunk))
                for chunk in _chunks(list(job_ids))
            ]
        )
        summaries: dict[str, RunSummary] = {}
        with self._read() as conn:
            for query in queries:
                for row in conn.execute(query).mappings():
                    summaries[row["job_id"]] = RunSummary.model_validate(dict(row))
        return summaries

    def interrupt_orphaned_runs(self, live_instance_ids: Collection[str]) -> int:
        query = sa.select(_runs).where(_runs.c.outcome == Outcome.RUNNING.value)
        if live_instance_ids:
            query = query.where(_runs.c.instance_id.not_in(list(live_instance_ids)))
        with self._begin() as conn:
            orphans = [Run.model_validate(row._asdict()) for row in conn.execute(query)]
            interrupted = [
                run.finish(Outcome.INTERRUPTED).model_copy(
                    update={
                        "error_message": f"instance {run.instance_id} stopped before "
                        "the run finished"
                    }
                )
                for run in orphans
            ]
            self._save_runs(conn, interrupted)
        return len(interrupted)

    def prune(self, older_than: datetime) -> int:
        # Missed and skipped runs may carry no finish time; their fire time dates them.
        ended = sa.func.coalesce(_runs.c.finished_at, _runs.c.scheduled_time)
        with self._begin() as conn:
            deleted = conn.execute(
                sa.delete(_runs).where(_runs.c.outcome != Outcome.RUNNING.value, ended < older_than)
            ).rowcount
            conn.execute(sa.delete(_claims).where(_claims.c.scheduled_time < older_than))
            conn.execute(
                sa.delete(_commands).where(
                    _commands.c.state != CommandState.PENDING.value,
                    _commands.c.finished_at < older_than,
                )
            )
        return deleted

    # instances -------------------------------------------------------------------------
    def heartbeat(self, instance: Instance) -> None:
        row = instance.model_dump() | {"last_seen": utcnow()}
        with self._begin() as conn:
            conn.execute(self._upsert(_instances, ["id"]), [row])

    def list_instances(self) -> list[Instance]:
        with self._read() as conn:
            rows = conn.execute(sa.select(_instances).order_by(_instances.c.id))
            return [Instance.model_validate(row._asdict()) for row in rows]

    def remove_instance(self, instance_id: str) -> None:
        with self._begin() as conn:
            conn.execute(sa.delete(_instances).where(_instances.c.id == instance_id))

    # commands --------------------------------------------------------------------------
    def enqueue_command(self, command: Command) -> None:
        row = command.model_dump() | {"payload": command.model_dump(mode="json")["payload"]}
        with self._begin() as conn:
            conn.execute(sa.insert(_commands), [row])
            if self._postgres:
                # Delivered only if the insert commits, so a woken leader finds the row.
                conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, command.id)))

    def get_command(self, command_id: str) -> Command | None:
        with self._read() as conn:
            row = conn.execute(sa.select(_commands).where(_commands.c.id == command_id)).first()
        return None if row is None else Command.model_validate(row._asdict())

    def pending_commands(self, limit: int = 100) -> list[Command]:
        query = (
            sa.select(_commands)
            .where(_commands.c.state == CommandState.PENDING.value)
            .order_by(_commands.c.created_at, _commands.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [Command.model_validate(row._asdict()) for row in conn.execute(query)]

    def finish_command(self, command_id: str, state: CommandState, reason: str | None) -> None:
        stmt = (
            sa.update(_commands)
            .where(
                _commands.c.id == command_id,
                _commands.c.state == CommandState.PENDING.value,
            )
            .values(state=state.value, reason=reason, finished_at=utcnow())
        )
        with self._begin() as conn:
            conn.execute(stmt)

    def wait_for_commands(self, timeout: float) -> None:
        if not self._postgres:
            time.sleep(min(timeout, SQLITE_POLL_SECONDS))
            return
        with self._listen_lock:
            try:
                conn = self._listener.get()
                for _ in conn.notifies(timeout=timeout, stop_after=1):
                    pass
            except psycopg.Error as error:
                self._listener.drop()
                raise self._error(error) from error

    # leadership ------------------------------------------------------------------------
    def acquire_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        if not self._postgres:
            return self._acquire_lease(instance_id, lease_seconds)
        with self._leader_lock:
            if self._leader_id is not None:
                # Advisory locks are re-entrant per session: locking again would stack.
                return self._leader_id == instance_id and self._holds_advisory_lock()
            if self._try_advisory_lock(instance_id, lease_seconds):
                return True
            if self._end_stale_leader_session():
                return self._retry_advisory_lock(instance_id, lease_seconds)
            return False

    def renew_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        if not self._postgres:
            return self._renew_lease(instance_id, lease_seconds)
        with self._leader_lock:
            if self._leader_id != instance_id:
                return False
            if self._holds_advisory_lock():
                return self._stamp_lease(instance_id, lease_seconds)
            # The session (and so the lock) is gone: someone else may hold it already.
            self._leader_id = None
            self._leader_conn.drop()
            return False

    def release_leadership(self, instance_id: str) -> None:
        if not self._postgres:
            self._release_lease(instance_id)
            return
        with self._leader_lock:
            if self._leader_id != instance_id:
                return
            self._leader_id = None
            try:
                self._leader_conn.get().execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK_KEY,))
            except psycopg.Error:
                pass  # a broken session has released its locks already
            finally:
                self._leader_conn.drop()

    # internals -------------------------------------------------------------------------
    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A write transaction, committed on exit."""
        try:
            with self._engine.begin() as conn:
                yield conn
        except sa_exc.DBAPIError as error:
            raise self._error(error) from error

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read-only transaction (on SQLite, one that takes no write lock)."""
        try:
            with self._engine.connect() as conn:
                yield conn.execution_options(**{_READ_ONLY: True})
        except sa_exc.DBAPIError as error:
            raise self._error(error) from error

    def _error(self, error: Exception) -> BackendError:
        cause = getattr(error, "orig", None) or error
        lines = str(cause).strip().splitlines()
        detail = lines[0] if lines else type(cause).__name__
        if self._url.password:
            detail = detail.replace(str(self._url.password), "***")
        if self._postgres:
            unreachable = isinstance(
                error,
                sa_exc.OperationalError
                | sa_exc.InterfaceError
                | psycopg.OperationalError
                | psycopg.InterfaceError,
            ) or (isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated)
        else:
            # sqlite3 raises OperationalError for everything from locks to bad SQL.
            unreachable = "unable to open" in detail
        what = "is unreachable" if unreachable else "failed"
        return BackendError(f"{self.kind} backend at {self._safe_url} {what}: {detail}")

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        return postgresql.insert(table) if self._postgres else sqlite.insert(table)

    def _upsert(self, table: sa.Table, keys: list[str]) -> sa.Executable:
        """INSERT that replaces every non-key column of an existing row."""
        stmt = self._insert(table)
        changes = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        return stmt.on_conflict_do_update(index_elements=keys, set_=changes)

    def _save_runs(self, conn: Connection, runs: Sequence[Run]) -> None:
        latest = {run.run_id: run for run in runs}
        if not latest:
            return
        before: dict[str, str] = {}
        for chunk in _chunks(list(latest)):
            query = sa.select(_runs.c.run_id, _runs.c.outcome).where(_runs.c.run_id.in_(chunk))
            before.update((row.run_id, row.outcome) for row in conn.execute(query))
        conn.execute(self._upsert(_runs, ["run_id"]), [r.model_dump() for r in latest.values()])
        # A run counts towards its summary once, when it first arrives finished: saving
        # the same finished run again (a retried batch) must not count it twice.
        newly_finished = [
            run
            for run in latest.values()
            if run.outcome is not Outcome.RUNNING
            and before.get(run.run_id, Outcome.RUNNING.value) == Outcome.RUNNING.value
        ]
        self._update_summaries(conn, newly_finished)

    def _update_summaries(self, conn: Connection, runs: list[Run]) -> None:
        if not runs:
            return
        summaries: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(sorted({run.job_id for run in runs})):
            query = sa.select(_summaries).where(_summaries.c.job_id.in_(chunk))
            if self._postgres:
                # Two writers folding runs of one job must not both start from the
                # same old counts.
                query = query.with_for_update()
            summaries.update({row["job_id"]: dict(row) for row in conn.execute(query).mappings()})
        for run in sorted(runs, key=_finish_key):
            summary = summaries.setdefault(run.job_id, _empty_summary(run.job_id))
            _fold(summary, run)
        conn.execute(self._upsert(_summaries, ["job_id"]), list(summaries.values()))

    # A session can hold the advisory lock while its process is frozen or its event loop
    # stuck: the kernel still answers keepalives. So the holder also stamps a lease, on
    # the database's clock, and a standby that finds the stamp expired ends the holder's
    # session, which frees the lock. The old leader learns it at its next renewal.
    def _stamp_lease(self, instance_id: str, lease_seconds: float) -> bool:
        self._on_leader_conn(
            "INSERT INTO sundial_leader_lease (name, holder, expires_at)"
            " VALUES (%s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (name) DO UPDATE"
            " SET holder = excluded.holder, expires_at = excluded.expires_at",
            (PG_LEASE_NAME, instance_id, lease_seconds),
        )
        return True

    def _end_stale_leader_session(self) -> bool:
        """Terminate the lock holder's session if its lease stamp has expired."""
        row = self._on_leader_conn(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l"
            " JOIN sundial_leader_lease s ON s.name = %s AND s.expires_at < now()"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1",
            (PG_LEASE_NAME, LEADER_LOCK_KEY >> 32, LEADER_LOCK_KEY & 0xFFFFFFFF),
        )
        return row is not None and bool(row[0])

    def _try_advisory_lock(self, instance_id: str, lease_seconds: float) -> bool:
        row = self._on_leader_conn("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
        if row is None or not row[0]:
            return False
        self._leader_id = instance_id
        return self._stamp_lease(instance_id, lease_seconds)

    def _retry_advisory_lock(self, instance_id: str, lease_seconds: float) -> bool:
        """Take the lock freed by a terminated session (its backend exits in moments)."""
        for _ in range(STALE_LOCK_RETRIES):
            if self._try_advisory_lock(instance_id, lease_seconds):
                return True
            time.sleep(STALE_LOCK_RETRY_SECONDS)
        return False

    def _on_leader_conn(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One statement on the dedicated leader connection; a broken one is dropped."""
        try:
            cursor = self._leader_conn.get().execute(sql, params)
            return cursor.fetchone() if cursor.description else None
        except psycopg.Error as error:
            # The session, and the advisory lock with it, is gone.
            self._leader_id = None
            self._leader_conn.drop()
            raise self._error(error) from error

    def _holds_advisory_lock(self) -> bool:
        """Whether the leader session is alive and still holds the advisory lock."""
        try:
            row = (
                self._leader_conn.get()
                .execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid() AND classid::bigint = %s"
                    " AND objid::bigint = %s AND objsubid = 1",
                    (LEADER_LOCK_KEY >> 32, LEADER_LOCK_KEY & 0xFFFFFFFF),
                )
                .fetchone()
            )
        except psycopg.Error:
            return False
        return row is not None and row[0] > 0

    def _acquire_lease(self, instance_id: str, lease_seconds: float) -> bool:
        now = utcnow()
        stmt = self._insert(_lease).values(
            name=LEASE_NAME, holder=instance_id, expires_at=now + timedelta(seconds=lease_seconds)
        )
        # One statement: taken only if free, expired or already ours, however many
        # processes try at once.
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
            where=sa.or_(
                _lease.c.holder.is_(None),
                _lease.c.holder == instance_id,
                _lease.c.expires_at <= now,
            ),
        )
        with self._begin() as conn:
            taken = conn.execute(stmt, execution_options=_COUNT_ROWS).rowcount == 1
        if taken:
            self._leader_id = instance_id
        return taken

    def _renew_lease(self, instance_id: str, lease_seconds: float) -> bool:
        # Still the holder means nobody took over, even if the lease ran out meanwhile.
        stmt = (
            sa.update(_lease)
            .where(_lease.c.name == LEASE_NAME, _lease.c.holder == instance_id)
            .values(expires_at=utcnow() + timedelta(seconds=lease_seconds))
        )
        with self._begin() as conn:
            renewed = conn.execute(stmt).rowcount == 1
        if not renewed and self._leader_id == instance_id:
            self._leader_id = None
        return renewed

    def _release_lease(self, instance_id: str) -> None:
        stmt = (
            sa.update(_lease)
            .where(_lease.c.name == LEASE_NAME, _lease.c.holder == instance_id)
            .values(holder=None, expires_at=None)
        )
        with self._begin() as conn:
            conn.execute(stmt)
        if self._leader_id == instance_id:
            self._leader_id = None


class _DedicatedConnection:
    """A psycopg connection kept out of the pool: opened on first use, again after a break."""

    def __init__(self, conninfo: str, *, setup: str | None = None) -> None:
        self._conninfo = conninfo
        self._setup = setup
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def get(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.drop()
            conn = psycopg.connect(self._conninfo, autocommit=True)
            if self._setup:
                conn.execute(self._setup)
            self._conn = conn
        return self._conn

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _normalise_url(raw: str) -> URL:
    try:
        url = sa.make_url(raw)
    except sa_exc.ArgumentError:
        raise BackendError(
            "SUNDIAL_BACKEND_URL is not a valid database URL; expected "
            "postgresql+psycopg://user:password@host/db or sqlite:///path/to/file.db"
        ) from None
    if url.drivername in ("postgresql", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        if not url.database or url.database == ":memory:":
            raise BackendError(
                "the SQLite backend needs a file shared by the scheduler and the API; "
                "use sqlite:///path/to/sundial.db"
            )
        return url
    raise BackendError(
        f"unsupported SQL backend {url.drivername!r}; use postgresql+psycopg:// or sqlite:///"
    )


def _postgres_engine(url: URL) -> Engine:
    # pre-ping replaces connections a restarted server has closed, instead of failing
    # the first statement on each of them.
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, **KEEPALIVES},
    )


def _sqlite_engine(url: URL) -> Engine:
    if sqlite3.sqlite_version_info < SQLITE_MIN_VERSION:
        needed = ".".join(map(str, SQLITE_MIN_VERSION))
        raise BackendError(
            f"the sqlite backend needs SQLite {needed} or newer; this Python links "
            f"{sqlite3.sqlite_version}: use a newer Python build, or Postgres"
        )
    folder = Path(url.database or "").expanduser().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BackendError(
            f"sqlite backend cannot create the folder {folder} for its database: {error.strerror}"
        ) from None
    engine = sa.create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
    )
    sa.event.listen(engine, "connect", _sqlite_connect)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
    dbapi_connection.isolation_level = None
    # WAL lets the API read while the scheduler writes.
    dbapi_connection.execute("PRAGMA journal_mode=WAL")


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the write lock up front: a deferred transaction that reads and then
    # writes can fail at once with "database is locked" rather than wait its turn.
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _chunks(items: Sequence[_T], size: int = IN_CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _finish_key(run: Run) -> datetime:
    return run.finished_at or run.scheduled_time


def _empty_summary(job_id: str) -> dict[str, Any]:
    return {"job_id": job_id, "consecutive_failures": 0} | dict.fromkeys(
        name for name in _SUMMARY_COLUMNS if name != "consecutive_failures"
    )


def _fold(summary: dict[str, Any], run: Run) -> None:
    """Update a summary row with one newly finished run (runs arrive oldest first)."""
    finished = _finish_key(run)
    ran_at = run.started_at or run.scheduled_time
    if summary["last_finished_at"] is None or finished >= summary["last_finished_at"]:
        summary.update(
            last_run_at=ran_at,
            last_outcome=run.outcome.value,
            last_duration_seconds=run.duration_seconds,
            last_finished_at=finished,
        )
    last_success = summary["last_success_finished_at"]
    if run.outcome is Outcome.SUCCESS:
        if last_success is None or finished >= last_success:
            summary.update(
                last_success_at=ran_at, last_success_finished_at=finished, consecutive_failures=0
            )
    elif run.outcome in FAILED_OUTCOMES:
        if last_success is None or finished > last_success:
            summary["consecutive_failures"] += 1
        if summary["last_failure_at"] is None or ran_at > summary["last_failure_at"]:
            summary["last_failure_at"] = ran_at
