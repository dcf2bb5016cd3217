"""The trivial jobs both sides run, and the clock each of them reads at start.

Both note ``(scheduled time, start time)`` as the first thing they do, in seconds since
the epoch. Sundial's job learns its fire time from the run context; plain APScheduler's
coroutine is not told its fire time, so :class:`ProbeExecutor` queues the fire times it
submits per job and the coroutine takes the oldest (APScheduler runs one job's fire
times in order, and the coroutine takes it before its first ``await``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from datetime import datetime
from typing import Any

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.job import Job

from sundial.context import current_run

#: (scheduled, started) of every run so far in this process
STARTS: list[tuple[float, float]] = []
#: runs started so far per whole scheduled second (cheap to poll)
_PER_SECOND: Counter[int] = Counter()
_PENDING: defaultdict[str, deque[float]] = defaultdict(deque)


def _note(scheduled: float) -> None:
    STARTS.append((scheduled, time.time()))
    _PER_SECOND[int(scheduled)] += 1


async def tick() -> None:
    """Sundial's job: nothing, but note when it started against its fire time."""
    _note(current_run().scheduled_time.timestamp())


async def probe(job_id: str) -> None:
    """Plain APScheduler's job: the same, with the fire time its executor queued."""
    _note(_PENDING[job_id].popleft())


async def idle() -> None:
    """The job of the stored-job benchmarks (catalog, memory); it never fires there."""


def started_between(start: int, end: int) -> int:
    """How many runs scheduled in the whole seconds ``[start, end)`` have started."""
    return sum(_PER_SECOND[second] for second in range(start, end))


class ProbeExecutor(AsyncIOExecutor):  # type: ignore[misc]
    """APScheduler's own asyncio executor, noting each job's fire times as it submits them."""

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> Any:
        _PENDING[job.id].extend(moment.timestamp() for moment in run_times)
        return super()._do_submit_job(job, run_times)
