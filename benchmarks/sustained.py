"""Sustained load, a burst, and SIGTERM under load, measured from outside the scheduler.

- **sustained**: N jobs due every second (``max_instances=1``, ``coalesce=True``, a
  trivial coroutine, full history) for a window of seconds: the share of fire times
  executed, how many were skipped, lag p50/p99 (start minus fire time) and the CPU the
  process used per second. Sundial is the real ``sundial-scheduler`` process, read back
  from its run history; plain APScheduler 3 (``AsyncIOScheduler`` on its own store for the
  same backend, ``CronTrigger(second="*")``) notes its starts itself.
- **SIGTERM**: at the end of each sustained window Sundial gets one SIGTERM; the time
  until the process has exited.
- **burst**: 10,000 jobs whose one fire time is the same instant: the time until all
  started and, for Sundial, until all were recorded.

``python -m benchmarks.sustained plain sustained|burst URL ...`` is the plain side's
subprocess; it prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from benchmarks import probe
from benchmarks.report import Row
from benchmarks.runner import run_worker
from benchmarks.scratch import Scratch
from benchmarks.stats import percentile
from benchmarks.stores import plain_store
from benchmarks.worker import PAGE, STARTED, until
from sundial.backends import BackendError, RunCursor, open_backend
from sundial.config import JobDefaults
from sundial.models import Outcome

SUSTAINED_JOBS = 1_000
SUSTAINED_SECONDS = 10
BURST_JOBS = 10_000
#: how long either side may take to store its jobs and start firing them
START_SECONDS = 300.0
#: the window starts this long after the first run, once start-up work has settled
WARMUP_SECONDS = 5.0
#: how long a side may take, after the burst instant, to start and record every run
BURST_PATIENCE_SECONDS = 60.0
GRACE_SECONDS = 2
#: SIGTERMs sent under the sustained load, each to a new leader
SIGTERM_ROUNDS = 10
#: how long each of those leaders runs under load before its SIGTERM
SIGTERM_LOAD_SECONDS = 3.0
POLL_SECONDS = 0.2
TICKS = os.sysconf("SC_CLK_TCK")

SUNDIAL_JOBS = '''
from datetime import UTC, datetime

from sundial import at, every, job

async def tick() -> None:
    """Does nothing."""

{trigger}
for number in range({jobs}):
    job(TRIGGER, id=f"load_{{number:05d}}", max_instances=1, coalesce=True)(tick)
'''
EVERY_SECOND = "TRIGGER = every(seconds=1, start_date=datetime(2026, 1, 1, tzinfo=UTC))"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


# -- Sundial: the real process ------------------------------------------------------------
@contextmanager
def sundial_process(url: str, workdir: Path, trigger: str, jobs: int) -> Iterator[Any]:
    """A ``sundial-scheduler`` leading ``jobs`` jobs of ``trigger``, killed if still alive."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "bench_jobs.py").write_text(SUNDIAL_JOBS.format(trigger=trigger, jobs=jobs))
    env = os.environ | {
        "SUNDIAL_BACKEND_URL": url,
        "SUNDIAL_JOB_MODULES": "bench_jobs",
        "SUNDIAL_METRICS_PORT": "0",
        "SUNDIAL_METRICS_HOST": "127.0.0.1",
        "SUNDIAL_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "SUNDIAL_LOG_FORMAT": "json",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(workdir), os.environ.get("PYTHONPATH")])),
    }
    with (workdir / "scheduler.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sundial_scheduler"],
            env=env,
            stdout=log,  # its logs are written as in production, to a file here
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def history(url: str, start: float, end: float) -> tuple[list[tuple[float, float]], int, int]:
    """``(scheduled, started)`` of the runs started for fire times in ``[start, end)``, the
    number skipped, and the number recorded at all."""
    backend = open_backend(url)
    started: list[tuple[float, float]] = []
    skipped = recorded = 0
    cursor: RunCursor | None = None
    try:
        while True:
            page = backend.list_runs(
                since=datetime.fromtimestamp(start, UTC), before=cursor, limit=PAGE
            )
            for run in page:
                scheduled = run.scheduled_time.timestamp()
                if not start <= scheduled < end:
                    continue
                recorded += 1
                if run.outcome in STARTED and run.started_at is not None:
                    started.append((scheduled, run.started_at.timestamp()))
                elif run.outcome is Outcome.SKIPPED:
                    skipped += 1
            if len(page) < PAGE:
                return started, skipped, recorded
            cursor = RunCursor(page[-1].scheduled_time, page[-1].run_id)
    finally:
        backend.close()


def wait_for_runs(url: str, since: float, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            started, _, _ = history(url, since, since + 3600)
        except BackendError:  # the scheduler has not created its tables yet
            started = []
        if started:
            return True
        time.sleep(1)
    return False


def sundial_sustained(url: str, workdir: Path, jobs: int, seconds: int) -> dict[str, Any]:
    with sundial_process(url, workdir, EVERY_SECOND, jobs) as process:
        if not wait_for_runs(url, time.time() - 1, START_SECONDS):
            raise RuntimeError(f"Sundial started no run within {START_SECONDS:.0f}s")
        time.sleep(WARMUP_SECONDS)
        start = float(int(time.time()) + 1)
        time.sleep(start - time.time())
        cpu_before = cpu_seconds(process.pid)
        time.sleep(seconds)
        cpu = cpu_seconds(process.pid) - cpu_before
        end = start + seconds
        time.sleep(max(0.0, end + 0.5 - time.time()))
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=GRACE_SECONDS + 60)
            exit_s: float | None = time.monotonic() - signalled
        except subprocess.TimeoutExpired:
            exit_s = None
    started, skipped, _ = history(url, start, end)
    return summary(started, jobs * seconds, skipped, cpu / seconds) | {"sigterm_exit_s": exit_s}


def sigterm_exit(url: str, workdir: Path, jobs: int) -> float | None:
    """Start a leader of ``jobs`` jobs due every second, let it run, send one SIGTERM:
    the seconds until it exited (None if it had not after a minute)."""
    with sundial_process(url, workdir, EVERY_SECOND, jobs) as process:
        if not wait_for_runs(url, time.time() - 1, START_SECONDS):
            raise RuntimeError(f"Sundial started no run within {START_SECONDS:.0f}s")
        time.sleep(SIGTERM_LOAD_SECONDS)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=GRACE_SECONDS + 60)
        except subprocess.TimeoutExpired:
            return None
        return time.monotonic() - signalled


def catalogued(url: str) -> int:
    backend = open_backend(url)
    try:
        return sum(backend.count_jobs().values())
    except BackendError:  # the scheduler has not created its tables yet
        return 0
    finally:
        backend.close()


def sundial_burst(url: str, workdir: Path, jobs: int) -> dict[str, Any]:
    """Store the jobs once (timing it), then start again with their instant set so far
    ahead that the leader is surely in place by then."""
    far = f"TRIGGER = at(datetime.fromtimestamp({time.time() + 3600:.0f}, UTC))"
    begun = time.monotonic()
    with sundial_process(url, workdir, far, jobs) as process:
        deadline = begun + START_SECONDS
        while catalogued(url) < jobs and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        setup_s = time.monotonic() - begun
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=GRACE_SECONDS + 60)
    instant = float(int(time.time() + 2 * setup_s + 10))
    trigger = f"TRIGGER = at(datetime.fromtimestamp({instant:.0f}, UTC))"
    with sundial_process(url, workdir, trigger, jobs):
        time.sleep(max(0.0, instant - time.time()))
        all_recorded_s = None
        while time.time() < instant + BURST_PATIENCE_SECONDS:
            if finished_runs(url, instant) >= jobs:
                all_recorded_s = time.time() - instant
                break
            time.sleep(POLL_SECONDS)
        started, _, recorded = history(url, instant, instant + 1)
        all_started_s = (
            max(begun for _, begun in started) - instant if len(started) >= jobs else None
        )
    return {
        "jobs": jobs,
        "setup_s": setup_s,
        "all_started_s": all_started_s,
        "all_recorded_s": all_recorded_s,
        "started": len(started),
        "recorded": recorded,
    }


def finished_runs(url: str, instant: float) -> int:
    backend = open_backend(url)
    try:
        since = datetime.fromtimestamp(instant, UTC)
        return len(backend.list_runs(outcome=Outcome.SUCCESS, since=since, limit=BURST_JOBS * 2))
    finally:
        backend.close()


# -- the rows of ``make bench`` ------------------------------------------------------------------
def rows(scratch: Scratch, backend: str, workdir: Path, *, quick: bool) -> list[Row]:
    """Sustained, SIGTERM and burst rows of one backend, plain beside Sundial."""
    jobs, seconds = (200, 5) if quick else (SUSTAINED_JOBS, SUSTAINED_SECONDS)
    burst = 1_000 if quick else BURST_JOBS
    rounds = 2 if quick else SIGTERM_ROUNDS
    log = workdir / "workers.log"
    with scratch.backend(backend) as url:
        ours = sundial_sustained(url, workdir / f"sustained-{backend}", jobs, seconds)
        exits = [ours["sigterm_exit_s"]] + [
            sigterm_exit(url, workdir / f"sustained-{backend}", jobs) for _ in range(rounds - 1)
        ]
    with scratch.backend(backend) as url:
        theirs = run_worker(
            ["plain", "sustained", url, f"--jobs={jobs}", f"--seconds={seconds}"],
            log=log,
            timeout=START_SECONDS + seconds + 60,
            module="benchmarks.sustained",
        )
    with scratch.backend(backend) as url:
        our_burst = sundial_burst(url, workdir / f"burst-{backend}", burst)
    with scratch.backend(backend) as url:
        instant = float(int(time.time() + 2 * our_burst["setup_s"] + 10))
        their_burst = run_worker(
            ["plain", "burst", url, f"--jobs={burst}", f"--instant={instant}"],
            log=log,
            timeout=instant - time.time() + BURST_PATIENCE_SECONDS + 60,
            module="benchmarks.sustained",
        )
    title = f"sustained: {jobs:,} jobs due every second"
    stopped = [exit_s for exit_s in exits if exit_s is not None]
    return [
        Row(backend, f"{title}: runs executed / due", "%", percent(ours), percent(theirs)),
        Row(backend, f"{title}: skipped", "runs", ours["skipped"], theirs["skipped"]),
        Row(backend, f"{title}: lag p50", "s", ours["lag_p50_s"], theirs["lag_p50_s"]),
        Row(backend, f"{title}: lag p99", "s", ours["lag_p99_s"], theirs["lag_p99_s"]),
        Row(backend, f"{title}: CPU", "%", 100 * ours["cpu_per_s"], 100 * theirs["cpu_per_s"]),
        Row(
            backend,
            f"SIGTERM under that load: exit (max of {len(exits)})",
            "s",
            max(stopped, default=None),
            None,
            f"{len(stopped)}/{len(exits)} exited; grace {GRACE_SECONDS}s",
        ),
        Row(
            backend,
            f"burst: {burst:,} due at one instant: all started",
            "s",
            our_burst["all_started_s"],
            their_burst["all_started_s"],
            burst_note(our_burst, their_burst),
        ),
        Row(
            backend,
            f"burst: {burst:,} due at one instant: all recorded",
            "s",
            our_burst["all_recorded_s"],
            None,
        ),
    ]


def percent(result: dict[str, Any]) -> float:
    return 100 * float(result["executed"]) / float(result["due"])


def burst_note(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    parts = []
    if ours["all_started_s"] is None:
        parts.append(f"Sundial: {ours['started']:,} started in time")
    if theirs["all_started_s"] is None:
        parts.append(f"plain: {theirs['started']:,} started in time")
    if not theirs.get("ready_before_instant", True):
        parts.append("plain was still storing its jobs at the instant")
    return "; ".join(parts)


def summary(
    started: list[tuple[float, float]], due: int, skipped: int, cpu_per_s: float
) -> dict[str, Any]:
    lags = [begun - scheduled for scheduled, begun in started]
    return {
        "due": due,
        "executed": len(started),
        "skipped": skipped,
        "lag_p50_s": percentile(lags, 0.50),
        "lag_p99_s": percentile(lags, 0.99),
        "cpu_per_s": cpu_per_s,
    }


# -- plain APScheduler: a subprocess of its own ------------------------------------------------
def plain_scheduler(url: str) -> AsyncIOScheduler:
    return AsyncIOScheduler(
        jobstores={"default": plain_store(url)},
        executors={"default": probe.ProbeExecutor()},
        # Sundial's default misfire grace: APScheduler's own (1 s) would drop, not run,
        # every fire time it reaches later than that.
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": JobDefaults().misfire_grace_time,
        },
        timezone=UTC,
    )


async def plain_sustained(url: str, jobs: int, seconds: int) -> dict[str, Any]:
    scheduler = plain_scheduler(url)
    skipped: list[float] = []

    def over_limit(event: JobSubmissionEvent) -> None:
        skipped.extend(moment.timestamp() for moment in event.scheduled_run_times)

    scheduler.add_listener(over_limit, EVENT_JOB_MAX_INSTANCES)
    for index in range(jobs):
        scheduler.add_job(
            probe.probe,
            CronTrigger(second="*"),
            id=f"load_{index:05d}",
            kwargs={"job_id": f"load_{index:05d}"},
        )
    scheduler.start()
    await until(lambda: bool(probe.STARTS), START_SECONDS)
    await asyncio.sleep(WARMUP_SECONDS)
    start = float(int(time.time()) + 1)
    await asyncio.sleep(start - time.time())
    cpu_before = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu_before
    end = start + seconds
    await asyncio.sleep(max(0.0, end + 0.5 - time.time()))
    scheduler.shutdown(wait=False)
    started = [(s, t) for s, t in probe.STARTS if start <= s < end]
    over = sum(start <= moment < end for moment in skipped)
    return summary(started, jobs * seconds, over, cpu / seconds)


async def plain_burst(url: str, jobs: int, instant: float) -> dict[str, Any]:
    scheduler = plain_scheduler(url)
    trigger = DateTrigger(datetime.fromtimestamp(instant, UTC))
    begun = time.monotonic()
    for index in range(jobs):
        job_id = f"burst_{index:05d}"
        scheduler.add_job(probe.probe, trigger, id=job_id, kwargs={"job_id": job_id})
    scheduler.start()
    setup_s = time.monotonic() - begun
    ready_at = time.time()
    await until(lambda: len(probe.STARTS) >= jobs, instant + BURST_PATIENCE_SECONDS - time.time())
    scheduler.shutdown(wait=False)
    return {
        "jobs": jobs,
        "setup_s": setup_s,
        "started": len(probe.STARTS),
        "all_started_s": max(t for _, t in probe.STARTS) - instant
        if len(probe.STARTS) >= jobs
        else None,
        "ready_before_instant": ready_at < instant,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sustained")
    parser.add_argument("side", choices=("plain",))
    parser.add_argument("scenario", choices=("sustained", "burst"))
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=SUSTAINED_JOBS)
    parser.add_argument("--seconds", type=int, default=SUSTAINED_SECONDS)
    parser.add_argument("--instant", type=float, default=0.0)
    args = parser.parse_args()
    if args.scenario == "sustained":
        result = asyncio.run(plain_sustained(args.url, args.jobs, args.seconds))
    else:
        result = asyncio.run(plain_burst(args.url, args.jobs, args.instant))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
