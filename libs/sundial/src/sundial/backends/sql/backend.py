"""Sundial's shared state in Postgres or SQLite: SQLAlchemy 2 Core over psycopg 3 or sqlite3.

Both servers share this one code path. What differs between them (engine, SQL dialect,
how the leader is elected and woken) is chosen once, from the URL, in the constructor.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Connection

from sundial.backends import history
from sundial.backends.base import Backend, Dispatched, RunCursor, no_task_engine
from sundial.backends.jobstore import JobStore
from sundial.backends.lock import LeaderLock
from sundial.backends.sql import schema
from sundial.backends.sql.database import Database, chunks
from sundial.backends.sql.dialects import Postgres, dialect_for
from sundial.backends.sql.jobstore import SqlJobStore
from sundial.backends.sql.leadership import AdvisoryLockLeadership, LeaseRowLeadership
from sundial.backends.sql.queue import ProcrastinateQueue
from sundial.backends.sql.wakeup import ListenNotifyWakeup, PollingWakeup, Wakeup
from sundial.constants import DEFAULT_QUEUE
from sundial.models import (
    Command,
    CommandState,
    Instance,
    JobState,
    JobView,
    Outcome,
    QueueDepth,
    Run,
    RunSummary,
    utcnow,
)

_RUNNING = Outcome.RUNNING.value


class SqlBackend(Backend):
    """Sundial's shared state in Postgres (``postgresql+psycopg://``) or SQLite."""

    def __init__(self, url: str) -> None:
        dialect = dialect_for(url)
        self.kind = dialect.kind
        self._db = Database(dialect)
        self._leadership: LeaderLock
        self._wakeup: Wakeup
        self._queue: ProcrastinateQueue | None = None
        if isinstance(dialect, Postgres):
            self._leadership = AdvisoryLockLeadership(dialect)
            self._wakeup = ListenNotifyWakeup(dialect)
            self._queue = ProcrastinateQueue(dialect)
        else:
            self._leadership = LeaseRowLeadership(self._db)
            self._wakeup = PollingWakeup()

    # lifecycle -------------------------------------------------------------------------
    def setup(self) -> None:
        config = AlembicConfig()
        # configparser interpolation would read a '%' in the path as a placeholder.
        config.set_main_option("script_location", str(schema.MIGRATIONS_DIR).replace("%", "%%"))
        with self._db.begin() as conn:
            self._db.dialect.lock_migrations(conn)
            config.attributes["connection"] = conn
            alembic_command.upgrade(config, "head")
            if self._queue is not None:
                self._queue.install(conn)

    def close(self) -> None:
        self._leadership.close()
        self._wakeup.close()
        self._db.dispose()

    def ping(self) -> None:
        with self._db.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def create_jobstore(self) -> JobStore:
        store: JobStore = SqlJobStore(engine=self._db.engine, tablename=schema.JOBSTORE_TABLE)
        return store

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
        job_tags = schema.job_tags
        with self._db.begin() as conn:
            conn.execute(self._db.upsert(schema.jobs, ["id"]), rows)
            for chunk in chunks(list(latest)):
                conn.execute(sa.delete(job_tags).where(job_tags.c.job_id.in_(chunk)))
            if tags:
                conn.execute(sa.insert(job_tags), tags)

    def delete_jobs(self, job_ids: Collection[str]) -> None:
        jobs, job_tags = schema.jobs, schema.job_tags
        with self._db.begin() as conn:
            for chunk in chunks(list(job_ids)):
                conn.execute(sa.delete(job_tags).where(job_tags.c.job_id.in_(chunk)))
                conn.execute(sa.delete(jobs).where(jobs.c.id.in_(chunk)))

    def get_job(self, job_id: str) -> JobView | None:
        jobs = schema.jobs
        with self._db.read() as conn:
            doc = conn.execute(sa.select(jobs.c.doc).where(jobs.c.id == job_id)).scalar()
        return None if doc is None else JobView.model_validate(doc)

    def list_jobs(
        self,
        *,
        state: JobState | None = None,
        tag: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[JobView]:
        jobs, job_tags = schema.jobs, schema.job_tags
        query = sa.select(jobs.c.doc).order_by(jobs.c.id).limit(limit)
        if state is not None:
            query = query.where(jobs.c.state == state.value)
        if tag is not None:
            tagged = sa.select(job_tags.c.job_id).where(job_tags.c.tag == tag)
            query = query.where(jobs.c.id.in_(tagged))
        if after is not None:
            query = query.where(jobs.c.id > after)
        with self._db.read() as conn:
            return [JobView.model_validate(doc) for doc in conn.execute(query).scalars()]

    def count_jobs(self) -> dict[JobState, int]:
        jobs = schema.jobs
        query = sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)
        counts = dict.fromkeys(JobState, 0)
        with self._db.read() as conn:
            for state, count in conn.execute(query):
                counts[JobState(state)] = count
        return counts

    # runs ------------------------------------------------------------------------------
    def claim_runs(
        self, claims: Sequence[tuple[str, datetime]], instance_id: str
    ) -> set[tuple[str, datetime]]:
        if not claims:
            return set()
        with self._db.begin() as conn:
            return self._claim(conn, claims, instance_id)

    def save_runs(self, runs: Sequence[Run]) -> None:
        incoming = history.latest(runs)
        if not incoming:
            return
        with self._db.begin() as conn:
            stored = self._locked_runs(conn, sa.true(), run_ids=list(incoming))
            self._store_runs(conn, incoming.values(), stored)

    def get_run(self, run_id: str) -> Run | None:
        runs = schema.runs
        with self._db.read() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
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
        runs = schema.runs
        query = (
            sa.select(runs)
            .order_by(runs.c.scheduled_time.desc(), runs.c.run_id.desc())
            .limit(limit)
        )
        if job_id is not None:
            query = query.where(runs.c.job_id == job_id)
        if outcome is not None:
            query = query.where(runs.c.outcome == outcome.value)
        if since is not None:
            query = query.where(runs.c.scheduled_time >= since)
        if before is not None:
            query = query.where(
                sa.or_(
                    runs.c.scheduled_time < before.scheduled_time,
                    sa.and_(
                        runs.c.scheduled_time == before.scheduled_time,
                        runs.c.run_id < before.run_id,
                    ),
                )
            )
        with self._db.read() as conn:
            return [Run.model_validate(row._asdict()) for row in conn.execute(query)]

    def last_run(
        self, job_id: str, *, outcome: Outcome | None = None, since: datetime | None = None
    ) -> Run | None:
        runs = schema.runs
        # history.started_at in SQL: a missed or skipped run's fire time stands in.
        started = sa.func.coalesce(runs.c.started_at, runs.c.scheduled_time)
        query = (
            sa.select(runs)
            .where(runs.c.job_id == job_id)
            .order_by(started.desc(), runs.c.run_id.desc())
            .limit(1)
        )
        if outcome is not None:
            query = query.where(runs.c.outcome == outcome.value)
        if since is not None:
            query = query.where(started >= since)
        with self._db.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else Run.model_validate(row._asdict())

    def run_summaries(self, job_ids: Collection[str] | None = None) -> dict[str, RunSummary]:
        with self._db.read() as conn:
            stored = self._summaries(conn, job_ids)
        return {job_id: summary.public() for job_id, summary in stored.items()}

    def interrupt_orphaned_runs(self, live_instance_ids: Collection[str]) -> list[Run]:
        runs = schema.runs
        still_running = runs.c.outcome == _RUNNING
        if live_instance_ids:
            still_running &= runs.c.instance_id.not_in(list(live_instance_ids))
        with self._db.begin() as conn:
            # Locked until the interrupted records are stored: a run that finishes in
            # between waits for us, or finished before we read and is not a candidate.
            candidates = self._locked_runs(conn, still_running)
            interrupted = history.interrupt_orphans(candidates.values(), live_instance_ids)
            return self._store_runs(conn, interrupted, candidates)

    def update_runs(
        self, run_ids: Collection[str], change: Callable[[Run], Run | None]
    ) -> list[Run]:
        if not run_ids:
            return []
        with self._db.begin() as conn:
            stored = self._locked_runs(conn, sa.true(), run_ids=sorted(run_ids))
            changed = [new for run in stored.values() if (new := change(run)) is not None]
            return self._store_runs(conn, changed, stored)

    def count_active(self, job_ids: Collection[str]) -> dict[str, int]:
        with self._db.read() as conn:
            return self._count_active(conn, job_ids)

    def queued_by_queue(self) -> dict[str, QueueDepth]:
        runs = schema.runs
        query = (
            sa.select(
                runs.c.queue,
                sa.func.count(),
                # history.due in SQL: a retry waits until its due time, a run until its fire.
                sa.func.min(sa.func.coalesce(runs.c.due_at, runs.c.scheduled_time)),
            )
            .where(runs.c.outcome == Outcome.QUEUED.value)
            .group_by(runs.c.queue)
        )
        with self._db.read() as conn:
            return {
                queue or DEFAULT_QUEUE: QueueDepth(count, _aware(oldest))
                for queue, count, oldest in conn.execute(query)
            }

    def claim_and_queue(
        self, runs: Sequence[Run], instance_id: str, limits: Mapping[str, int]
    ) -> Dispatched:
        if not runs:
            return Dispatched()
        queue = self._engine()
        with self._db.begin() as conn:
            won = self._claim(conn, [(run.job_id, run.scheduled_time) for run in runs], instance_id)
            claimed = [run for run in runs if (run.job_id, run.scheduled_time) in won]
            active = self._count_active(conn, {run.job_id for run in claimed})
            dispatched = Dispatched()
            for run in claimed:
                limit = limits.get(run.job_id)
                if limit is not None and active[run.job_id] >= limit:
                    dispatched.over_limit.append(run)
                else:
                    active[run.job_id] += 1
                    dispatched.queued.append(run)
            self._store_runs(conn, dispatched.queued, {})
            queue.enqueue(_driver_connection(conn), dispatched.queued)
        return dispatched

    def queue_runs(self, runs: Sequence[Run]) -> None:
        if not runs:
            return
        queue = self._engine()
        with self._db.begin() as conn:
            stored = self._locked_runs(conn, sa.true(), run_ids=[run.run_id for run in runs])
            queued = self._store_runs(conn, runs, stored)
            queue.enqueue(_driver_connection(conn), queued)

    def run_queue(self) -> ProcrastinateQueue:
        return self._engine()

    def _engine(self) -> ProcrastinateQueue:
        if self._queue is None:
            raise no_task_engine(self.kind)
        return self._queue

    def prune(self, older_than: datetime) -> int:
        runs, claims, commands = schema.runs, schema.claims, schema.commands
        # history.ended_at in SQL: a missed or skipped run may carry no finish time.
        ended = sa.func.coalesce(runs.c.finished_at, runs.c.scheduled_time)
        with self._db.begin() as conn:
            deleted = conn.execute(
                sa.delete(runs).where(runs.c.outcome != _RUNNING, ended < older_than)
            ).rowcount
            conn.execute(sa.delete(claims).where(claims.c.scheduled_time < older_than))
            conn.execute(
                sa.delete(commands).where(
                    commands.c.state != CommandState.PENDING.value,
                    commands.c.finished_at < older_than,
                )
            )
        return deleted

    # instances -------------------------------------------------------------------------
    def heartbeat(self, instance: Instance) -> None:
        row = instance.model_dump() | {"last_seen": utcnow()}
        with self._db.begin() as conn:
            conn.execute(self._db.upsert(schema.instances, ["id"]), [row])

    def list_instances(self) -> list[Instance]:
        instances = schema.instances
        with self._db.read() as conn:
            rows = conn.execute(sa.select(instances).order_by(instances.c.id))
            return [Instance.model_validate(row._asdict()) for row in rows]

    def remove_instance(self, instance_id: str) -> None:
        instances = schema.instances
        with self._db.begin() as conn:
            conn.execute(sa.delete(instances).where(instances.c.id == instance_id))

    # commands --------------------------------------------------------------------------
    def enqueue_command(self, command: Command) -> None:
        row = command.model_dump() | {"payload": command.model_dump(mode="json")["payload"]}
        with self._db.begin() as conn:
            conn.execute(sa.insert(schema.commands), [row])
            self._wakeup.notify(conn, command.id)

    def get_command(self, command_id: str) -> Command | None:
        commands = schema.commands
        with self._db.read() as conn:
            row = conn.execute(sa.select(commands).where(commands.c.id == command_id)).first()
        return None if row is None else Command.model_validate(row._asdict())

    def pending_commands(self, limit: int = 100) -> list[Command]:
        commands = schema.commands
        query = (
            sa.select(commands)
            .where(commands.c.state == CommandState.PENDING.value)
            .order_by(commands.c.created_at, commands.c.id)
            .limit(limit)
        )
        with self._db.read() as conn:
            return [Command.model_validate(row._asdict()) for row in conn.execute(query)]

    def finish_command(self, command_id: str, state: CommandState, reason: str | None) -> None:
        commands = schema.commands
        stmt = (
            sa.update(commands)
            .where(commands.c.id == command_id, commands.c.state == CommandState.PENDING.value)
            .values(state=state.value, reason=reason, finished_at=utcnow())
        )
        with self._db.begin() as conn:
            conn.execute(stmt)

    def wait_for_commands(self, timeout: float) -> None:
        self._wakeup.wait(timeout)

    # leadership ------------------------------------------------------------------------
    def acquire_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        return self._leadership.acquire(instance_id, lease_seconds)

    def renew_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        return self._leadership.renew(instance_id, lease_seconds)

    def release_leadership(self, instance_id: str) -> None:
        self._leadership.release(instance_id)

    # internals -------------------------------------------------------------------------
    def _claim(
        self, conn: Connection, claims: Sequence[tuple[str, datetime]], instance_id: str
    ) -> set[tuple[str, datetime]]:
        # Aware datetimes hash by instant, so the rows read back (in UTC) find the pairs
        # as passed in, and two spellings of one instant are one claim.
        wanted = {claim: claim for claim in claims}
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
        table = schema.claims
        stmt = (
            self._db.insert(table)
            .on_conflict_do_nothing(index_elements=["job_id", "scheduled_time"])
            .returning(table.c.job_id, table.c.scheduled_time)
        )
        # SQLAlchemy sends the rows as multi-row INSERTs ("insertmanyvalues"), one per
        # page of rows, in this one transaction; RETURNING lists only the rows inserted.
        return {wanted[row.job_id, row.scheduled_time] for row in conn.execute(stmt, rows)}

    @staticmethod
    def _count_active(conn: Connection, job_ids: Collection[str]) -> dict[str, int]:
        runs = schema.runs
        counts = dict.fromkeys(job_ids, 0)
        active = [outcome.value for outcome in history.ACTIVE_OUTCOMES]
        for chunk in chunks(sorted(job_ids)):
            query = (
                sa.select(runs.c.job_id, sa.func.count())
                .where(runs.c.job_id.in_(chunk), runs.c.outcome.in_(active))
                .group_by(runs.c.job_id)
            )
            counts.update((job_id, count) for job_id, count in conn.execute(query))
        return counts

    def _locked_runs(
        self, conn: Connection, where: sa.ColumnElement[bool], run_ids: list[str] | None = None
    ) -> dict[str, Run]:
        """Stored runs matching ``where`` (and ``run_ids``), locked to the transaction's end.

        Postgres locks the rows (in run id order, so two writers cannot deadlock); SQLite
        needs no row locks, its write transactions run one at a time.
        """
        runs = schema.runs
        query = sa.select(runs).where(where).order_by(runs.c.run_id).with_for_update()
        queries = (
            [query]
            if run_ids is None
            else [query.where(runs.c.run_id.in_(chunk)) for chunk in chunks(run_ids)]
        )
        found: dict[str, Run] = {}
        for each in queries:
            for row in conn.execute(each):
                run = Run.model_validate(row._asdict())
                found[run.run_id] = run
        return found

    def _store_runs(
        self, conn: Connection, incoming: Collection[Run], stored: Mapping[str, Run]
    ) -> list[Run]:
        """Write the records that supersede ``stored`` (read under lock); fold new finishes."""
        writes = [run for run in incoming if history.supersedes(run, stored.get(run.run_id))]
        if not writes:
            return []
        conn.execute(self._db.upsert(schema.runs, ["run_id"]), [run.model_dump() for run in writes])
        finished = [run for run in writes if history.newly_finished(run, stored.get(run.run_id))]
        if finished:
            job_ids = sorted({run.job_id for run in finished})
            # Locked too: two writers folding runs of one job must not both start from
            # the same old counts.
            current = self._summaries(conn, job_ids, lock=True)
            changed = history.fold_all(current, finished)
            rows = [summary.model_dump() for summary in changed.values()]
            conn.execute(self._db.upsert(schema.summaries, ["job_id"]), rows)
        return writes

    @staticmethod
    def _summaries(
        conn: Connection, job_ids: Collection[str] | None, *, lock: bool = False
    ) -> dict[str, history.StoredSummary]:
        table = schema.summaries
        query = sa.select(table).order_by(table.c.job_id)
        if lock:
            query = query.with_for_update()
        queries = (
            [query]
            if job_ids is None
            else [query.where(table.c.job_id.in_(chunk)) for chunk in chunks(list(job_ids))]
        )
        return {
            row["job_id"]: history.StoredSummary.model_validate(dict(row))
            for each in queries
            for row in conn.execute(each).mappings()
        }


def _driver_connection(conn: Connection) -> Any:
    """The psycopg connection under a SQLAlchemy one: the engine defers on it, inside the
    transaction SQLAlchemy has begun."""
    return conn.connection.driver_connection


def _aware(moment: datetime) -> datetime:
    """An aggregate's datetime comes back without the column type: naive UTC on SQLite."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
