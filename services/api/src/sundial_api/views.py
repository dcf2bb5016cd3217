"""Read-side logic: catalog, runs and heartbeats turned into API answers.

Every function here is blocking (it calls the backend); routes run them in a thread.
"""

from __future__ import annotations

import heapq
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sundial.backends import Backend, BackendError, RunCursor
from sundial.constants import CATALOG_SCAN_PAGE, MAX_PAGE_SIZE
from sundial.models import (
    FINAL_OUTCOMES,
    Instance,
    InstanceRole,
    JobState,
    JobView,
    Outcome,
    Run,
    RunSummary,
)
from sundial_api.cursors import encode_job_cursor, encode_run_cursor
from sundial_api.errors import ApiError
from sundial_api.schemas import (
    BackendStatus,
    DurationStats,
    HealthDetailed,
    InstanceOut,
    JobCounts,
    JobDetail,
    JobPage,
    JobSummary,
    LastRun,
    NextRun,
    RecentStats,
    RunOut,
    RunPage,
    SchedulerStatus,
    WorkerList,
    WorkerOut,
)

#: recent-run statistics cover at most this many finished runs
STATS_WINDOW = 50
NEXT_RUNS_SHOWN = 10
#: catalog entries one page of a text or outcome search reads at most, so that each page
#: of a search through a large catalog answers in about the time of a few plain pages
SEARCH_SCAN_LIMIT = 5_000
EXECUTED = frozenset({Outcome.SUCCESS, Outcome.FAILURE, Outcome.TIMEOUT, Outcome.INTERRUPTED})


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def since_utc(moment: datetime | None) -> datetime | None:
    """The ``since`` query parameter in UTC; 422 when it cannot be expressed in UTC."""
    if moment is None:
        return None
    try:
        return utc(moment)
    except OverflowError:
        raise ApiError(
            422, "validation_error", "query parameter 'since': out of range; use a real date"
        ) from None


def last_run(summary: RunSummary | None) -> LastRun | None:
    if summary is None:
        return None
    return LastRun(
        at=summary.last_run_at,
        outcome=summary.last_outcome,
        duration_seconds=summary.last_duration_seconds,
        last_success_at=summary.last_success_at,
        last_failure_at=summary.last_failure_at,
        consecutive_failures=summary.consecutive_failures,
    )


def job_summary(job: JobView, summary: RunSummary | None) -> JobSummary:
    return JobSummary(
        id=job.id,
        name=job.name,
        func=job.func,
        state=job.state,
        trigger=job.trigger,
        trigger_text=job.trigger_text,
        next_run_time=job.next_run_time,
        critical=job.options.critical,
        tags=job.options.tags,
        source=job.source,
        last_run=last_run(summary),
    )


def job_page(
    backend: Backend,
    *,
    state: JobState | None,
    tag: str | None,
    after: str | None,
    limit: int,
    text: str | None = None,
    outcome: Outcome | None = None,
) -> JobPage:
    """Jobs by id after ``after``; ``text`` and a last ``outcome`` narrow them further.

    State and tag are the backend's own filters. Backends cannot search text or last
    outcomes, so such a page scans the catalog, at most :data:`SEARCH_SCAN_LIMIT` entries
    per page: fewer than ``limit`` items with a ``next_cursor`` means the scan stopped
    there, and the next page searches on from that point.
    """
    if text is None and outcome is None:
        jobs = backend.list_jobs(state=state, tag=tag, after=after, limit=limit + 1)
        more = len(jobs) > limit
        jobs = jobs[:limit]
        summaries = backend.run_summaries([job.id for job in jobs]) if jobs else {}
        return JobPage(
            items=[job_summary(job, summaries.get(job.id)) for job in jobs],
            next_cursor=encode_job_cursor(jobs[-1].id) if more else None,
        )
    needle = text.casefold() if text else ""
    found: list[JobSummary] = []
    scanned = 0
    while True:
        batch = backend.list_jobs(state=state, tag=tag, after=after, limit=CATALOG_SCAN_PAGE)
        candidates = [job for job in batch if _mentions(job, needle)]
        summaries = backend.run_summaries([job.id for job in candidates]) if candidates else {}
        for job in candidates:
            summary = summaries.get(job.id)
            if outcome is not None and (summary is None or summary.last_outcome != outcome):
                continue
            if len(found) == limit:
                # one match more than fits: the next page starts after the last one shown
                return JobPage(items=found, next_cursor=encode_job_cursor(found[-1].id))
            found.append(job_summary(job, summary))
        scanned += len(batch)
        if len(batch) < CATALOG_SCAN_PAGE:
            return JobPage(items=found, next_cursor=None)
        after = batch[-1].id
        if scanned >= SEARCH_SCAN_LIMIT:
            return JobPage(items=found, next_cursor=encode_job_cursor(after))


def _mentions(job: JobView, needle: str) -> bool:
    """Whether the job's id, name or function contains ``needle`` (casefolded)."""
    return any(needle in text.casefold() for text in (job.id, job.name, job.func))


def run_out(run: Run) -> RunOut:
    return RunOut.model_validate(run.model_dump())


def run_page(
    backend: Backend,
    *,
    job_id: str | None,
    outcome: Outcome | None,
    since: datetime | None,
    before: RunCursor | None,
    limit: int,
) -> RunPage:
    runs = backend.list_runs(
        job_id=job_id, outcome=outcome, since=since, before=before, limit=limit + 1
    )
    more = len(runs) > limit
    runs = runs[:limit]
    cursor = None
    if more:
        cursor = encode_run_cursor(RunCursor(runs[-1].scheduled_time, runs[-1].run_id))
    return RunPage(items=[run_out(run) for run in runs], next_cursor=cursor)


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def recent_stats(runs: Sequence[Run]) -> RecentStats:
    """Outcome counts, success rate and durations of finished runs (newest first)."""
    finished = [run for run in runs if run.outcome in FINAL_OUTCOMES][:STATS_WINDOW]
    outcomes = Counter(run.outcome for run in finished)
    executed = sum(count for outcome, count in outcomes.items() if outcome in EXECUTED)
    durations = sorted(
        run.duration_seconds
        for run in finished
        if run.outcome in EXECUTED and run.duration_seconds is not None
    )
    return RecentStats(
        window=STATS_WINDOW,
        runs=len(finished),
        outcomes=dict(outcomes),
        success_rate=outcomes[Outcome.SUCCESS] / executed if executed else None,
        duration_seconds=DurationStats(
            mean=statistics.fmean(durations),
            p50=_percentile(durations, 0.5),
            p95=_percentile(durations, 0.95),
            max=durations[-1],
        )
        if durations
        else None,
    )


def job_detail(backend: Backend, job: JobView) -> JobDetail:
    summary = backend.run_summaries([job.id]).get(job.id)
    # running runs sort among finished ones: read a little past the window
    runs = backend.list_runs(job_id=job.id, limit=STATS_WINDOW + 10)
    running = backend.list_runs(job_id=job.id, outcome=Outcome.RUNNING, limit=20)
    base = job_summary(job, summary)
    return JobDetail(
        **base.model_dump(),
        description=job.options.description,
        kwargs=job.public_kwargs(),
        options=job.options,
        expected_interval_seconds=job.expected_interval_seconds,
        fingerprint=job.fingerprint,
        updated_at=job.updated_at,
        running=[run_out(run) for run in running],
        recent=recent_stats(runs),
    )


def instance_out(instance: Instance, now: datetime, dead_after: float) -> InstanceOut:
    age = max(0.0, (now - utc(instance.last_seen)).total_seconds())
    return InstanceOut(
        **instance.model_dump(),
        heartbeat_age_seconds=round(age, 3),
        alive=age <= dead_after,
    )


def scheduler_status(
    instances: Sequence[Instance], now: datetime, dead_after: float
) -> SchedulerStatus:
    """Instances with their heartbeat ages; alive unless silent for ``dead_after`` seconds."""
    views = sorted(
        (instance_out(instance, now, dead_after) for instance in instances),
        key=lambda view: (view.role != InstanceRole.LEADER, view.heartbeat_age_seconds),
    )
    leaders = [v for v in views if v.alive and v.role == InstanceRole.LEADER]
    return SchedulerStatus(
        leader=leaders[0].id if leaders else None,
        leader_present=bool(leaders),
        live_instances=sum(1 for v in views if v.alive),
        heartbeat_age_seconds=min((v.heartbeat_age_seconds for v in views), default=None),
        instances=views,
    )


def running_runs(backend: Backend) -> list[RunOut]:
    """Runs in progress, newest first (as many as one page of the API holds)."""
    return run_page(
        backend, job_id=None, outcome=Outcome.RUNNING, since=None, before=None, limit=MAX_PAGE_SIZE
    ).items


def worker_list(
    instances: Sequence[Instance], running: Sequence[RunOut], now: datetime, dead_after: float
) -> WorkerList:
    """The worker instances with their heartbeat ages and the runs each executes now."""
    by_instance: dict[str, list[RunOut]] = {}
    for run in running:
        by_instance.setdefault(run.instance_id, []).append(run)
    workers = []
    for instance in instances:
        if instance.role is not InstanceRole.WORKER:
            continue
        age = max(0.0, (now - utc(instance.last_seen)).total_seconds())
        workers.append(
            WorkerOut(
                **instance.model_dump(exclude={"role"}),
                heartbeat_age_seconds=round(age, 3),
                state="alive" if age <= dead_after else "dead",
                running=by_instance.get(instance.id, []),
            )
        )
    workers.sort(key=lambda worker: (worker.state != "alive", worker.id))
    return WorkerList(live=sum(1 for w in workers if w.state == "alive"), workers=workers)


def next_runs(jobs: Iterable[JobView], count: int = NEXT_RUNS_SHOWN) -> list[NextRun]:
    soonest = heapq.nsmallest(
        count,
        (job for job in jobs if job.next_run_time is not None),
        key=lambda job: utc(job.next_run_time) if job.next_run_time else datetime.max,
    )
    return [
        NextRun(
            job_id=job.id,
            name=job.name,
            next_run_time=job.next_run_time,
            trigger_text=job.trigger_text,
        )
        for job in soonest
        if job.next_run_time is not None
    ]


def scheduler_problems(
    scheduler: SchedulerStatus, dead_after: float
) -> tuple[list[str], list[str]]:
    """(reasons for unhealthy, reasons for degraded)."""
    fatal: list[str] = []
    warnings: list[str] = []
    if not scheduler.instances:
        fatal.append("no scheduler is running: none is registered (stopped, or never started)")
    elif not scheduler.leader_present:
        fatal.append(
            "no live scheduler leader (no leader heartbeat within "
            f"{dead_after:g}s): jobs are not running"
        )
    live_leaders = [i for i in scheduler.instances if i.alive and i.role == InstanceRole.LEADER]
    if len(live_leaders) > 1:
        warnings.append(f"{len(live_leaders)} instances report themselves leader")
    dead = [i.id for i in scheduler.instances if not i.alive]
    if dead and scheduler.leader_present:
        warnings.append(f"instances without a recent heartbeat: {', '.join(dead)}")
    return fatal, warnings


def health_report(backend: Backend, dead_after: float) -> HealthDetailed:
    """Backend, schedulers, job counts and the next runs, with an overall verdict."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    try:
        backend.ping()
        latency = (time.perf_counter() - started) * 1000
        instances = backend.list_instances()
        counts = backend.count_jobs()
        upcoming = next_runs(backend.iter_jobs(state=JobState.SCHEDULED))
    except BackendError as error:
        return HealthDetailed(
            status="unhealthy",
            problems=[f"backend unreachable: {error}"],
            checked_at=now,
            backend=BackendStatus(kind=backend.kind, up=False, error=str(error)),
            scheduler=None,
            jobs=None,
            next_runs=[],
        )
    scheduler = scheduler_status(instances, now, dead_after)
    fatal, warnings = scheduler_problems(scheduler, dead_after)
    return HealthDetailed(
        status="unhealthy" if fatal else "degraded" if warnings else "healthy",
        problems=fatal + warnings,
        checked_at=now,
        backend=BackendStatus(kind=backend.kind, up=True, latency_ms=round(latency, 2)),
        scheduler=scheduler,
        jobs=JobCounts(
            total=sum(counts.values()),
            scheduled=counts.get(JobState.SCHEDULED, 0),
            paused=counts.get(JobState.PAUSED, 0),
        ),
        next_runs=upcoming,
    )
