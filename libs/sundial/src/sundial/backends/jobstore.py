"""What the scheduler needs of a backend's APScheduler job store.

Each backend provides its own store: APScheduler 3's job store for that server, plus one
batched write. APScheduler stores jobs one at a time (``update_job``), so a wakeup that
fires N jobs would pay N round trips before its last job starts; ``update_jobs`` writes
what ``update_job`` writes, for all of them at once. And one streamed read: a leader
taking over a hundred thousand jobs reads when each runs (``iter_schedules``) without
rebuilding and holding every job at once, as ``get_all_jobs`` does.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import structlog

if TYPE_CHECKING:
    from apscheduler.job import Job

log = structlog.get_logger("sundial.jobstore")

#: stored jobs read per round trip by ``iter_schedules``
SCHEDULE_PAGE = 1000


class StoredSchedule(NamedTuple):
    """When a stored job runs next, and by which trigger."""

    job_id: str
    next_run_time: datetime | None
    trigger: Any


def read_schedules(states: Iterable[tuple[str, bytes]]) -> Iterator[StoredSchedule]:
    """The schedule in each ``(job id, pickled job state)``, unpickled one at a time.

    Only the state is unpickled, not the job rebuilt from it: its function is not
    imported. A state that cannot be read is logged and left out, as APScheduler leaves
    out (and deletes) such a job when it reads it.
    """
    for job_id, data in states:
        try:
            state = pickle.loads(data)
            schedule = StoredSchedule(job_id, state["next_run_time"], state["trigger"])
        except Exception as error:
            log.warning("jobstore.unreadable_job", job_id=job_id, error=str(error))
            continue
        yield schedule


class JobStore(Protocol):
    """An APScheduler 3 job store (``BaseJobStore``'s methods) with a batched write."""

    def start(self, scheduler: Any, alias: str) -> None: ...

    def shutdown(self) -> None: ...

    def lookup_job(self, job_id: str) -> Job | None: ...

    def get_due_jobs(self, now: datetime) -> list[Job]: ...

    def get_next_run_time(self) -> datetime | None: ...

    def get_all_jobs(self) -> list[Job]: ...

    def iter_schedules(self) -> Iterator[StoredSchedule]:
        """Every stored job's schedule, read a page of :data:`SCHEDULE_PAGE` at a time."""

    def add_job(self, job: Job) -> None: ...

    def update_job(self, job: Job) -> None: ...

    def update_jobs(self, jobs: Sequence[Job]) -> None:
        """Store each job's next run time and state as ``update_job`` would, in one write.

        Only jobs the store holds are passed (the scheduler holds its job stores lock
        from reading them due to this write, and only the leader runs a scheduler).
        """

    def remove_job(self, job_id: str) -> None: ...

    def remove_all_jobs(self) -> None: ...
