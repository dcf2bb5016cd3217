"""What runs in the benchmark's subprocesses: one scheduler, measured, then a JSON line.

``python -m benchmarks.worker lag sundial URL --jobs N --warmup S --fires K``
``python -m benchmarks.worker memory plain URL``
``python -m benchmarks.worker monitor sundial URL --jobs N --fires K --monitor off``

Each scenario gets a process of its own, so that one side's threads, caches and garbage
never weigh on the other's numbers, and so that memory is one scheduler's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from benchmarks import probe
from benchmarks.stores import plain_store
from sundial.backends import RunCursor, open_backend
from sundial.config import Settings
from sundial.jobs import Registry, every
from sundial.logging import configure_logging
from sundial.models import Outcome
from sundial_scheduler.service import SundialScheduler

#: both sides: every fire time runs, however late (so lag is measured, not hidden)
GRACE_SECONDS = 3_600
MAX_INSTANCES = 3
#: how long a scheduler may take to start leading with its jobs in place
START_SECONDS = 900.0
#: memory is read this long after start-up work has finished
SETTLE_SECONDS = 3.0
POLL_SECONDS = 0.25
PAGE = 1_000
STARTED = frozenset(
    {Outcome.RUNNING, Outcome.SUCCESS, Outcome.FAILURE, Outcome.TIMEOUT, Outcome.INTERRUPTED}
)


def job_id(index: int) -> str:
    return f"bench-{index:06d}"


def sundial_settings(url: str) -> Settings:
    return Settings(
        backend_url=url,
        metrics_port=0,
        metrics_host="127.0.0.1",
        job_modules=(),
        log_format="json",
        log_level="INFO",
    )


def production_logging() -> None:
    """Sundial logs as in production (JSON, INFO), written to nowhere."""
    configure_logging(log_format="json", level="INFO")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # kept open for the process


async def until(predicate: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_SECONDS)
    return True


def window_after(warmup: float, fires: int) -> tuple[int, int]:
    """The whole seconds ``[start, end)`` whose fire times are measured."""
    start = math.ceil(time.time() + warmup)
    return start, start + fires


# -- lag ----------------------------------------------------------------------------------
async def sundial_lag(
    url: str, jobs: int, warmup: float, fires: int, patience: float
) -> dict[str, Any]:
    production_logging()
    registry = Registry()
    for index in range(jobs):
        registry.job(
            every(seconds=1),
            id=job_id(index),
            misfire_grace_time=GRACE_SECONDS,
            max_instances=MAX_INSTANCES,
        )(probe.tick)
    scheduler = SundialScheduler(
        sundial_settings(url), registry=registry, metrics_registry=CollectorRegistry()
    )
    begun = time.monotonic()
    task = asyncio.create_task(scheduler.run())
    if not await until(lambda: scheduler.scheduling or task.done(), START_SECONDS):
        raise RuntimeError("Sundial did not start scheduling")
    if task.done():
        task.result()
        raise RuntimeError("Sundial stopped before it started scheduling")
    setup_s = time.monotonic() - begun
    start, end = window_after(warmup, fires)
    expected = jobs * fires
    await until(
        lambda: probe.started_between(start, end) >= expected,
        end + patience - time.time(),
    )
    deadline = time.time()
    stopping = time.monotonic()
    scheduler.request_stop()
    await task  # drains, then flushes run history (bounded by the writer's flush timeout)
    stop_s = time.monotonic() - stopping
    recorded, not_run = await asyncio.to_thread(recorded_runs, url, start, end)
    return {
        "setup_s": setup_s,
        "window": [start, end],
        "deadline": deadline,
        "expected": expected,
        "starts": recorded,
        "probe_starts": [(s, t) for s, t in probe.STARTS if start <= s < end],
        "started_by_jobs": probe.started_between(start, end),
        "not_run": not_run,
        "stop_s": stop_s,
    }


def recorded_runs(url: str, start: int, end: int) -> tuple[list[tuple[float, float]], int]:
    """``(scheduled, started)`` of the recorded runs in the window, and missed/skipped ones."""
    backend = open_backend(url)
    since = datetime.fromtimestamp(start, UTC)
    found: list[tuple[float, float]] = []
    not_run = 0
    cursor: RunCursor | None = None
    try:
        while True:
            page = backend.list_runs(since=since, before=cursor, limit=PAGE)
            for run in page:
                scheduled = run.scheduled_time.timestamp()
                if not start <= scheduled < end or run.manual or run.attempt != 1:
                    continue
                if run.outcome in STARTED and run.started_at is not None:
                    found.append((scheduled, run.started_at.timestamp()))
                else:
                    not_run += 1
            if len(page) < PAGE:
                return found, not_run
            cursor = RunCursor(page[-1].scheduled_time, page[-1].run_id)
    finally:
        backend.close()


async def plain_lag(
    url: str, jobs: int, warmup: float, fires: int, patience: float
) -> dict[str, Any]:
    scheduler = AsyncIOScheduler(
        jobstores={"default": plain_store(url)},
        executors={"default": probe.ProbeExecutor()},
        job_defaults={
            "coalesce": False,
            "max_instances": MAX_INSTANCES,
            "misfire_grace_time": GRACE_SECONDS,
        },
        timezone=UTC,
    )
    trigger = IntervalTrigger(seconds=1, timezone=UTC)
    for index in range(jobs):
        scheduler.add_job(probe.probe, trigger, id=job_id(index), kwargs={"job_id": job_id(index)})
    begun = time.monotonic()
    scheduler.start()  # stores the jobs, one add_job each
    setup_s = time.monotonic() - begun
    start, end = window_after(warmup, fires)
    expected = jobs * fires
    await until(
        lambda: probe.started_between(start, end) >= expected,
        end + patience - time.time(),
    )
    deadline = time.time()
    scheduler.shutdown(wait=False)
    starts = [(s, t) for s, t in probe.STARTS if start <= s < end]
    return {
        "setup_s": setup_s,
        "window": [start, end],
        "deadline": deadline,
        "expected": expected,
        "starts": starts,
        "probe_starts": starts,
        "started_by_jobs": len(starts),
        "not_run": 0,
        "stop_s": 0.0,
    }


# -- memory -------------------------------------------------------------------------------
def memory_kib() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process, in KiB."""
    values: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


async def sundial_memory(url: str) -> dict[str, Any]:
    """A Sundial leader on a store and catalog filled beforehand (API-created jobs)."""
    production_logging()
    registry = Registry()
    registry.task(probe.idle)
    scheduler = SundialScheduler(
        sundial_settings(url), registry=registry, metrics_registry=CollectorRegistry()
    )
    begun = time.monotonic()
    task = asyncio.create_task(scheduler.run())
    if not await until(lambda: scheduler.scheduling or task.done(), START_SECONDS):
        raise RuntimeError("Sundial did not start scheduling")
    if task.done():
        task.result()
    ready_s = time.monotonic() - begun
    # The leader rewrites the catalog at start-up; memory is read once that is done.
    await asyncio.to_thread(scheduler.writer.flush, START_SECONDS)
    settled_s = time.monotonic() - begun
    await asyncio.sleep(SETTLE_SECONDS)
    steady = memory_kib()
    assert scheduler.http is not None
    scrape_s, scrape_bytes = await asyncio.to_thread(scrape, scheduler.http.port)
    after_scrape = memory_kib()
    return {
        "jobs": len(scheduler.catalog.views()),
        "ready_s": ready_s,
        "settled_s": settled_s,
        "steady": steady,
        "scrape_s": scrape_s,
        "scrape_bytes": scrape_bytes,
        "after_scrape": after_scrape,
    }


#: one timed GET from a process of its own (so that the reader does not share the GIL
#: with the scheduler it reads) where curl, a native reader like Prometheus, is missing
_SCRAPE = """
import sys, time, urllib.request
begun = time.perf_counter()
with urllib.request.urlopen(sys.argv[1], timeout=120) as response:
    size = len(response.read())
print(time.perf_counter() - begun, size)
"""


def scrape(port: int) -> tuple[float, int]:
    """Seconds one ``GET /metrics`` takes, as Prometheus would make it (uncompressed), and bytes."""
    url = f"http://127.0.0.1:{port}/metrics"
    if curl := shutil.which("curl"):
        command = [curl, "-sf", "-o", os.devnull, "-w", "%{time_total} %{size_download}", url]
    else:
        command = [sys.executable, "-c", _SCRAPE, url]
    done = subprocess.run(command, capture_output=True, check=True, text=True)
    seconds, size = done.stdout.split()
    return float(seconds), int(size)


# -- the event-loop monitor's cost --------------------------------------------------------
async def monitor_cost(url: str, jobs: int, seconds: int, monitor: bool) -> dict[str, Any]:
    """CPU seconds of a Sundial leader running ``jobs`` async jobs every second, over a window.

    ``monitor`` False sets the blocked-loop threshold to 0, which turns the monitor off.
    """
    production_logging()
    registry = Registry()
    for index in range(jobs):
        registry.job(every(seconds=1), id=job_id(index), max_instances=MAX_INSTANCES)(probe.tick)
    settings = sundial_settings(url).model_copy(
        update={} if monitor else {"event_loop_blocked_seconds": 0.0}
    )
    scheduler = SundialScheduler(settings, registry=registry, metrics_registry=CollectorRegistry())
    task = asyncio.create_task(scheduler.run())
    if not await until(lambda: scheduler.scheduling or task.done(), START_SECONDS):
        raise RuntimeError("Sundial did not start scheduling")
    await asyncio.sleep(3)  # past the first fires and the catalog rewrite
    start, end = window_after(0, seconds)
    await asyncio.sleep(start - time.time())
    cpu = time.process_time()
    await asyncio.sleep(end - time.time())
    cpu_s = time.process_time() - cpu
    scheduler.request_stop()
    await task
    return {"cpu_s": cpu_s, "runs": probe.started_between(start, end), "monitor": monitor}


async def plain_memory(url: str) -> dict[str, Any]:
    """Plain APScheduler running on the same store; then once more after ``get_jobs()``."""
    scheduler = AsyncIOScheduler(jobstores={"default": plain_store(url)}, timezone=UTC)
    begun = time.monotonic()
    scheduler.start()
    ready_s = time.monotonic() - begun
    await asyncio.sleep(SETTLE_SECONDS)
    steady = memory_kib()
    jobs = len(scheduler.get_jobs())
    return {"jobs": jobs, "ready_s": ready_s, "settled_s": ready_s, "steady": steady} | {
        "after_get_jobs": memory_kib()
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("what", choices=("lag", "memory", "monitor"))
    parser.add_argument("side", choices=("sundial", "plain"))
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--fires", type=int, default=5)
    parser.add_argument("--patience", type=float, default=5)
    parser.add_argument("--monitor", choices=("on", "off"), default="on")
    args = parser.parse_args()
    if args.what == "monitor":
        on = args.monitor == "on"
        result = asyncio.run(monitor_cost(args.url, args.jobs, args.fires, on))
    elif args.what == "lag":
        measure = sundial_lag if args.side == "sundial" else plain_lag
        result = asyncio.run(measure(args.url, args.jobs, args.warmup, args.fires, args.patience))
    else:
        result = asyncio.run((sundial_memory if args.side == "sundial" else plain_memory)(args.url))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # Skip the orderly teardown of 100,000 jobs: the backend is thrown away anyway.
    os._exit(0)


if __name__ == "__main__":
    main()
