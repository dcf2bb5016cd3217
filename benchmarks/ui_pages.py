"""``python -m benchmarks.ui_pages``: time to first byte of the web UI's pages.

Fills a backend with a catalog (100,000 jobs by default, a third of them with a run in
their history), serves the API with uvicorn on loopback, and times each page from the
request until its first byte arrives, beside the JSON API's page of the same jobs, the
pair that makes numbers from a shared machine comparable.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

from benchmarks.scratch import Scratch
from benchmarks.stats import load, percentile
from sundial.backends import open_backend
from sundial.config import Settings
from sundial.models import JobOptions, JobState, JobView, Outcome, Run, utcnow
from sundial.triggers import CronSpec, IntervalSpec
from sundial_api.cursors import encode_job_cursor
from sundial_api.main import create_app

BATCH = 1_000
TAGS = 20
#: one job in this many is paused; one in this many has run; one of those runs failed
PAUSED_EVERY = 10
RAN_EVERY = 3
FAILED_EVERY = 7


def job_id(index: int) -> str:
    return f"job-{index:06d}"


def fill(url: str, count: int) -> float:
    """``count`` catalog entries and their run history; seconds taken."""
    now = utcnow()
    backend = open_backend(url)
    begun = time.perf_counter()
    try:
        backend.setup()
        for first in range(0, count, BATCH):
            jobs, runs = [], []
            for index in range(first, min(first + BATCH, count)):
                trigger = (
                    CronSpec(expression=f"{index % 60} * * * *")
                    if index % 2
                    else IntervalSpec(seconds=60 + index % 3600)
                )
                paused = index % PAUSED_EVERY == 0
                jobs.append(
                    JobView(
                        id=job_id(index),
                        name=f"Job number {index}",
                        func="benchmarks.probe:idle",
                        trigger=trigger,
                        trigger_text=trigger.describe(),
                        state=JobState.PAUSED if paused else JobState.SCHEDULED,
                        next_run_time=None if paused else now + timedelta(seconds=index),
                        options=JobOptions(tags=(f"team-{index % TAGS}",)),
                    )
                )
                if index % RAN_EVERY == 0:
                    started = now - timedelta(minutes=index % 120)
                    outcome = Outcome.FAILURE if index % FAILED_EVERY == 0 else Outcome.SUCCESS
                    run = Run(job_id=job_id(index), scheduled_time=started, started_at=started)
                    runs.append(run.finish(outcome))
            backend.save_jobs(jobs)
            backend.save_runs(runs)
    finally:
        backend.close()
    return time.perf_counter() - begun


@contextmanager
def served(url: str) -> Iterator[str]:
    """The API (and so the UI) on a free loopback port, as ``sundial-api`` serves it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(Settings(backend_url=url, log_format="json", log_level="WARNING"))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


def first_byte(client: httpx.Client, url: str) -> float:
    begun = time.perf_counter()
    with client.stream("GET", url) as response:
        chunks = response.iter_raw()
        next(chunks)
        elapsed = time.perf_counter() - begun
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        for _ in chunks:  # the rest of the page, before the next request
            pass
    return elapsed


def pages(count: int) -> list[tuple[str, str]]:
    middle = encode_job_cursor(job_id(count // 2))
    return [
        ("jobs page, first", "/ui/jobs"),
        ("jobs page, in the middle (cursor)", f"/ui/jobs?cursor={middle}"),
        ("jobs page, state=paused", "/ui/jobs?state=paused"),
        ("jobs page, tag", "/ui/jobs?tag=team-7"),
        ("jobs page, last outcome failure", "/ui/jobs?outcome=failure"),
        ("jobs page, text found (q=number 4242)", "/ui/jobs?q=number%204242"),
        ("jobs page, text nowhere (one full scan)", "/ui/jobs?q=no-such-text"),
        ("the jobs page's counts (loaded after it)", "/ui/job-counts"),
        ("a job's page", f"/ui/jobs/{job_id(count // 3 // RAN_EVERY * RAN_EVERY)}"),
        ("JSON API, 50 jobs (pair)", "/api/v1/jobs?limit=50"),
    ]


def measure(url: str, count: int, repeats: int) -> list[tuple[str, float, float]]:
    with served(url) as base, httpx.Client(base_url=base, timeout=60) as client:
        rows = []
        for label, path in pages(count):
            first_byte(client, path)  # warm up
            samples = [first_byte(client, path) for _ in range(repeats)]
            rows.append((label, percentile(samples, 0.5) or 0.0, percentile(samples, 0.95) or 0.0))
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ui_pages", description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    console = Console()
    with _backend(args.backend) as url:
        console.print(f"filling {args.jobs:,} jobs into {args.backend}…")
        console.print(f"filled in {fill(url, args.jobs):.0f} s; {load()}")
        table = Table(title=f"time to first byte, {args.jobs:,} jobs, {args.backend}")
        for column in ("page", "p50", "p95"):
            table.add_column(column, justify="left" if column == "page" else "right")
        for label, p50, p95 in measure(url, args.jobs, args.repeats):
            table.add_row(label, f"{p50 * 1000:,.0f} ms", f"{p95 * 1000:,.0f} ms")
        console.print(table)


@contextmanager
def _backend(kind: str) -> Iterator[str]:
    if kind == "postgres":
        with Scratch().backend("postgres") as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="sundial-ui-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'sundial.db'}"


if __name__ == "__main__":
    main()
