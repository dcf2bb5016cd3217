"""The Backend interface: everything the scheduler and the API share.

One backend holds APScheduler's job store, the JSON job catalog, run history with its
per-fire-time claims, the command queue, instance heartbeats and the leader lock. All
methods are blocking; async callers run them in a thread.

Implementations store and fetch. The rules of run history that every backend must keep
the same (how records of one run merge, how summaries fold, which runs an orphan sweep
interrupts) live above them, in :mod:`sundial.backends.history`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sundial.backends import history
from sundial.backends.jobstore import JobStore
from sundial.constants import CATALOG_SCAN_PAGE
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
)

if TYPE_CHECKING:
    from sundial.backends.queue import RunQueue


class BackendError(Exception):
    """The backend could not be reached or refused an operation."""


def no_task_engine(kind: str) -> BackendError:
    return BackendError(
        f"the {kind} backend has no task engine: SUNDIAL_EXECUTOR=queue needs a Postgres "
        "(procrastinate) or Redis (Dramatiq) backend"
    )


@dataclass(frozen=True)
class Dispatched:
    """What :meth:`Backend.claim_and_queue` did with the runs it was given."""

    #: stored ``queued`` and handed to the engine
    queued: list[Run] = field(default_factory=list)
    #: claimed, but the job already had ``max_instances`` runs queued or running
    over_limit: list[Run] = field(default_factory=list)


@dataclass(frozen=True)
class RunCursor:
    """Position in the newest-first run listing: strictly older than this point."""

    scheduled_time: datetime
    run_id: str


class Backend(ABC):
    """Shared state of a Sundial deployment. Implementations: ``sql``, ``redis``."""

    #: "postgres", "sqlite" or "redis" (the ``backend`` metric label)
    kind: str

    # lifecycle -------------------------------------------------------------------------
    @abstractmethod
    def setup(self) -> None:
        """Create or migrate the schema; idempotent, safe to run from several processes."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and the leader lock if held."""

    @abstractmethod
    def ping(self) -> None:
        """Return if the backend answers; raise :class:`BackendError` otherwise."""

    @abstractmethod
    def create_jobstore(self) -> JobStore:
        """This backend's APScheduler job store (used only by the leader)."""

    # catalog ---------------------------------------------------------------------------
    @abstractmethod
    def save_jobs(self, jobs: Sequence[JobView]) -> None:
        """Insert or replace catalog entries by id."""

    @abstractmethod
    def delete_jobs(self, job_ids: Collection[str]) -> None:
        """Remove catalog entries; unknown ids are ignored."""

    @abstractmethod
    def get_job(self, job_id: str) -> JobView | None: ...

    @abstractmethod
    def list_jobs(
        self,
        *,
        state: JobState | None = None,
        tag: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[JobView]:
        """Catalog entries ordered by id, starting after the id ``after``."""

    @abstractmethod
    def count_jobs(self) -> dict[JobState, int]:
        """Number of catalog entries in each state (every state present, maybe 0)."""

    def iter_jobs(self, *, state: JobState | None = None) -> Iterator[JobView]:
        """Every catalog entry (in that state), by id, a page per round trip."""
        after: str | None = None
        while True:
            page = self.list_jobs(state=state, after=after, limit=CATALOG_SCAN_PAGE)
            yield from page
            if len(page) < CATALOG_SCAN_PAGE:
                return
            after = page[-1].id

    # runs ------------------------------------------------------------------------------
    @abstractmethod
    def claim_runs(
        self, claims: Sequence[tuple[str, datetime]], instance_id: str
    ) -> set[tuple[str, datetime]]:
        """Claim fire times ``(job_id, scheduled_time)`` together; return the ones won.

        Each fire time is won only by its first claimant, ever; a fire time listed twice
        in one call is won at most once. The returned pairs are the ones passed in.
        """

    @abstractmethod
    def save_runs(self, runs: Sequence[Run]) -> None:
        """Store runs by ``run_id``, each merged with its stored record; durable on return.

        A record replaces the stored one only as :func:`history.supersedes` allows (a
        finished run is never reopened), and a run that finishes here joins its job's
        summary once (:func:`history.fold`), however often the same batch is saved.
        """

    @abstractmethod
    def get_run(self, run_id: str) -> Run | None: ...

    @abstractmethod
    def list_runs(
        self,
        *,
        job_id: str | None = None,
        outcome: Outcome | None = None,
        since: datetime | None = None,
        before: RunCursor | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Runs newest first by (scheduled_time, run_id); ``since`` bounds scheduled_time."""

    @abstractmethod
    def last_run(
        self, job_id: str, *, outcome: Outcome | None = None, since: datetime | None = None
    ) -> Run | None:
        """The most recent run of ``job_id`` (by start), optionally with an outcome."""

    @abstractmethod
    def run_summaries(self, job_ids: Collection[str] | None = None) -> dict[str, RunSummary]:
        """Digest of finished runs per job (all jobs with history when ``job_ids`` is None).

        Folded by :func:`history.fold` as runs finish. One query's cost, not one per job:
        the API reads it for every scrape and every page of jobs.
        """

    @abstractmethod
    def interrupt_orphaned_runs(self, live_instance_ids: Collection[str]) -> list[Run]:
        """Interrupt the runs still ``running`` on instances not in ``live_instance_ids``.

        Decided atomically (:func:`history.interrupt_orphans` on runs read under lock or
        watch): a run that finishes meanwhile keeps its own outcome. Returns the records
        of the runs this call interrupted.
        """

    @abstractmethod
    def update_runs(
        self, run_ids: Collection[str], change: Callable[[Run], Run | None]
    ) -> list[Run]:
        """Replace each stored run by ``change(run)``, atomically; return what was stored.

        ``change`` sees the run as stored (under lock, or inside a watch) and returns its
        new record or None to leave it: how transitions such as ``queued -> running``
        (:func:`history.start`) are decided without a read-then-write race. Records are
        merged by :func:`history.supersedes` and folded into summaries like any saved run.
        """

    def start_run(self, run_id: str, instance_id: str) -> Run | None:
        """Move a queued run to running on ``instance_id``; None if it was not queued."""
        started = self.update_runs([run_id], lambda run: history.start(run, instance_id))
        return started[0] if started else None

    @abstractmethod
    def count_active(self, job_ids: Collection[str]) -> dict[str, int]:
        """Queued and running runs per job (every job asked for, maybe 0)."""

    @abstractmethod
    def queued_by_queue(self) -> dict[str, QueueDepth]:
        """How many runs wait in each workers' queue, and since when the oldest is due."""

    @abstractmethod
    def claim_and_queue(
        self, runs: Sequence[Run], instance_id: str, limits: Mapping[str, int]
    ) -> Dispatched:
        """Claim each queued run's fire time; store and enqueue the runs won, together.

        A job with ``limits[job_id]`` runs already queued or running gets no more: its
        runs are claimed and returned as over the limit. On Postgres the claim, the
        record and the message commit in one transaction.
        """

    @abstractmethod
    def queue_runs(self, runs: Sequence[Run]) -> None:
        """Store ``queued`` runs that need no claim (retries) and enqueue their messages."""

    def reconcile_queued(self, due_before: datetime) -> int:
        """Send again the messages of runs still queued that were due before ``due_before``;
        how many. Nothing to do where a run's record and message commit together."""
        return 0

    def run_queue(self) -> RunQueue:
        """The engine that delivers this backend's queued runs to workers."""
        raise no_task_engine(self.kind)

    @abstractmethod
    def prune(self, older_than: datetime) -> int:
        """Delete finished runs, claims and finished commands older than ``older_than``."""

    # instances -------------------------------------------------------------------------
    @abstractmethod
    def heartbeat(self, instance: Instance) -> None:
        """Record that ``instance`` is alive now, with its role."""

    @abstractmethod
    def list_instances(self) -> list[Instance]: ...

    @abstractmethod
    def remove_instance(self, instance_id: str) -> None: ...

    # commands --------------------------------------------------------------------------
    @abstractmethod
    def enqueue_command(self, command: Command) -> None:
        """Store a pending command and wake the leader."""

    @abstractmethod
    def get_command(self, command_id: str) -> Command | None: ...

    @abstractmethod
    def pending_commands(self, limit: int = 100) -> list[Command]:
        """Pending commands, oldest first."""

    @abstractmethod
    def finish_command(self, command_id: str, state: CommandState, reason: str | None) -> None:
        """Record a command as applied or rejected."""

    @abstractmethod
    def wait_for_commands(self, timeout: float) -> None:
        """Block until a command may be pending or ``timeout`` seconds pass."""

    # leadership ------------------------------------------------------------------------
    @abstractmethod
    def acquire_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        """Take the leader lock if free; True if this instance now holds it."""

    @abstractmethod
    def renew_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        """Extend the lease; False if this instance no longer holds the lock."""

    @abstractmethod
    def release_leadership(self, instance_id: str) -> None:
        """Give up the lock if held."""
