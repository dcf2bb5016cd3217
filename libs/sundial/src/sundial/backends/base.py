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
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sundial.backends.jobstore import JobStore
from sundial.constants import CATALOG_SCAN_PAGE
from sundial.models import (
    Command,
    CommandState,
    Instance,
    JobState,
    JobView,
    Outcome,
    Run,
    RunSummary,
)


class BackendError(Exception):
    """The backend could not be reached or refused an operation."""


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
    def interrupt_orphaned_runs(self, live_instance_ids: Collection[str]) -> int:
        """Interrupt the runs still ``running`` on instances not in ``live_instance_ids``.

        Decided atomically (:func:`history.interrupt_orphans` on runs read under lock or
        watch): a run that finishes meanwhile keeps its own outcome. Returns how many
        runs this call interrupted.
        """

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
