"""What the scheduler needs of a backend's APScheduler job store.

Each backend provides its own store: APScheduler 3's job store for that server, plus one
batched write. APScheduler stores jobs one at a time (``update_job``), so a wakeup that
fires N jobs would pay N round trips before its last job starts; ``update_jobs`` writes
what ``update_job`` writes, for all of them at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from apscheduler.job import Job


class JobStore(Protocol):
    """An APScheduler 3 job store (``BaseJobStore``'s methods) with a batched write."""

    def start(self, scheduler: Any, alias: str) -> None: ...

    def shutdown(self) -> None: ...

    def lookup_job(self, job_id: str) -> Job | None: ...

    def get_due_jobs(self, now: datetime) -> list[Job]: ...

    def get_next_run_time(self) -> datetime | None: ...

    def get_all_jobs(self) -> list[Job]: ...

    def add_job(self, job: Job) -> None: ...

    def update_job(self, job: Job) -> None: ...

    def update_jobs(self, jobs: Sequence[Job]) -> None:
        """Store each job's next run time and state as ``update_job`` would, in one write.

        Only jobs the store holds are passed (the scheduler holds its job stores lock
        from reading them due to this write, and only the leader runs a scheduler).
        """

    def remove_job(self, job_id: str) -> None: ...

    def remove_all_jobs(self) -> None: ...
