"""What each page shows, read through the same view functions as the JSON API.

Every function here is blocking (it calls the backend); routes and the live feed run
them in a worker thread.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from sundial.backends import Backend, BackendError, RunCursor
from sundial.constants import MAX_PAGE_SIZE, dead_after
from sundial.models import JobState, JobView, Outcome
from sundial_api.cursors import decode_job_cursor, decode_run_cursor
from sundial_api.schemas import JobDetail, JobSummary, RunOut, RunPage, SchedulerStatus
from sundial_api.views import (
    job_detail,
    job_page,
    job_summary,
    run_out,
    run_page,
    running_runs,
    scheduler_problems,
    scheduler_status,
)

JOBS_PER_PAGE = 50
RUNS_PER_PAGE = 25
NEXT_FIRES_SHOWN = 5


# every page ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Banner:
    """Why jobs may not be running: the backend is down, or no scheduler is alive."""

    outage: str | None = None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def outage(error: BackendError) -> Banner:
    return Banner(outage=f"The backend is unreachable: {error}. Retrying.")


def scheduler_state(backend: Backend, lease_seconds: float) -> tuple[Banner, SchedulerStatus]:
    """The instances with their heartbeat ages, and the banner they call for."""
    silent_after = dead_after(lease_seconds)
    status = scheduler_status(backend.list_instances(), datetime.now(UTC), silent_after)
    problems, warnings = scheduler_problems(status, silent_after)
    return Banner(problems=tuple(problems), warnings=tuple(warnings)), status


def _grouped(runs: list[RunOut], key: str) -> dict[str, list[RunOut]]:
    groups: defaultdict[str, list[RunOut]] = defaultdict(list)
    for run in runs:
        groups[getattr(run, key)].append(run)
    return dict(groups)


def _query(params: dict[str, str | None]) -> str:
    return urlencode({key: value for key, value in params.items() if value is not None})


# the jobs page ---------------------------------------------------------------------------
@dataclass(frozen=True)
class JobFilters:
    state: JobState | None = None
    tag: str | None = None
    outcome: Outcome | None = None
    text: str | None = None
    cursor: str | None = None

    @property
    def narrowed(self) -> bool:
        return any(value is not None for value in (self.state, self.tag, self.outcome, self.text))

    def query(self, *, cursor: str | None) -> str:
        """The page's query string with ``cursor`` in place of the current one."""
        return _query(
            {
                "state": self.state,
                "tag": self.tag,
                "outcome": self.outcome,
                "q": self.text,
                "cursor": cursor,
            }
        )


@dataclass(frozen=True)
class JobRow:
    """One job's row: ``job`` is None once the job has been removed."""

    job_id: str
    job: JobSummary | None
    running: list[RunOut] = field(default_factory=list)


@dataclass(frozen=True)
class JobsPage:
    filters: JobFilters
    rows: list[JobRow]
    next_cursor: str | None

    @property
    def search_stopped(self) -> bool:
        """A search read as much of the catalog as one page may and found too few."""
        return self.next_cursor is not None and len(self.rows) < JOBS_PER_PAGE


def jobs_page(backend: Backend, filters: JobFilters) -> JobsPage:
    listed = job_page(
        backend,
        state=filters.state,
        tag=filters.tag,
        after=decode_job_cursor(filters.cursor) if filters.cursor else None,
        limit=JOBS_PER_PAGE,
        text=filters.text,
        outcome=filters.outcome,
    )
    running = _grouped(running_runs(backend), "job_id")
    return JobsPage(
        filters=filters,
        rows=[JobRow(job.id, job, running.get(job.id, [])) for job in listed.items],
        next_cursor=listed.next_cursor,
    )


def job_rows(backend: Backend, job_ids: list[str]) -> list[JobRow]:
    """The rows of these jobs as they are now (the live jobs page re-reads its own rows)."""
    jobs = [backend.get_job(job_id) for job_id in job_ids]
    present = [job for job in jobs if job is not None]
    summaries = backend.run_summaries([job.id for job in present]) if present else {}
    running = _grouped(running_runs(backend), "job_id")
    return [
        JobRow(
            job_id,
            job_summary(job, summaries.get(job_id)) if job is not None else None,
            running.get(job_id, []),
        )
        for job_id, job in zip(job_ids, jobs, strict=True)
    ]


# a job -----------------------------------------------------------------------------------
def next_fire_times(job: JobView, count: int = NEXT_FIRES_SHOWN) -> list[datetime]:
    """The job's next ``count`` fire times by its trigger, from its next run on."""
    if job.next_run_time is None:
        return []
    fires = [job.next_run_time]
    try:
        trigger = job.trigger.build()
        while len(fires) < count:
            following = trigger.get_next_fire_time(fires[-1], fires[-1])
            if following is None or following <= fires[-1]:
                break
            fires.append(following)
    except (ValueError, OverflowError):
        # a trigger the catalog shows but this process cannot compute beyond its next run
        pass
    return fires


@dataclass(frozen=True)
class HistoryFilter:
    """Which of a job's runs its page shows: an outcome, and from where (newest first)."""

    outcome: Outcome | None = None
    cursor: str | None = None

    def query(self, *, cursor: str | None) -> str:
        return _query({"outcome": self.outcome, "cursor": cursor})


@dataclass(frozen=True)
class JobPage:
    detail: JobDetail
    next_fires: list[datetime]
    runs: RunPage
    history: HistoryFilter


def job_page_data(backend: Backend, job_id: str, history: HistoryFilter) -> JobPage | None:
    """The job and a page of its runs; None if there is no such job."""
    job = backend.get_job(job_id)
    if job is None:
        return None
    return JobPage(
        detail=job_detail(backend, job),
        next_fires=next_fire_times(job),
        runs=run_page(
            backend,
            job_id=job_id,
            outcome=history.outcome,
            since=None,
            before=decode_run_cursor(history.cursor) if history.cursor else None,
            limit=RUNS_PER_PAGE,
        ),
        history=history,
    )


# a run -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPageData:
    run: RunOut
    job: JobView | None
    #: every attempt at the same fire time, the first first
    attempts: list[RunOut]


def run_page_data(backend: Backend, run_id: str) -> RunPageData | None:
    stored = backend.get_run(run_id)
    if stored is None:
        return None
    run = run_out(stored)
    # attempts share the fire time: runs at it and not after it
    at_fire_time = run_page(
        backend,
        job_id=run.job_id,
        outcome=None,
        since=run.scheduled_time,
        before=RunCursor(run.scheduled_time + timedelta(microseconds=1), ""),
        limit=MAX_PAGE_SIZE,
    ).items
    return RunPageData(
        run=run,
        job=backend.get_job(run.job_id),
        attempts=sorted(at_fire_time, key=lambda attempt: attempt.attempt),
    )


# schedulers and workers ------------------------------------------------------------------
@dataclass(frozen=True)
class InstancesPage:
    status: SchedulerStatus
    #: runs in progress by instance id
    running: dict[str, list[RunOut]]


def instances_page(backend: Backend, status: SchedulerStatus) -> InstancesPage:
    return InstancesPage(status=status, running=_grouped(running_runs(backend), "instance_id"))
