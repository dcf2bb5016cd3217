"""Jobs run on workers: a real scheduler and real ``sundial-worker`` processes, on each
backend with a task engine (procrastinate on Postgres, Dramatiq on Redis).

Each test writes the job module it schedules (functions from ``worker_jobs``), starts a
leader with ``SUNDIAL_EXECUTOR=queue`` and two workers, and reads both the run history
and the executions the job functions themselves noted.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_modules import load_deploy_module
from failover import E2E_DIR, WORKER, Cluster, all_runs
from monitoring_tools import command
from servers import redis_server
from timing import within

from sundial.backends import Backend, open_backend
from sundial.models import Outcome, Run

pytestmark = pytest.mark.e2e

conventions = load_deploy_module("conventions", "conventions.py")
promql = load_deploy_module("promql", "prometheus/promql.py")

LEASE_SECONDS = 3
#: generous: the machine running the suite may be busy
WITHIN = 40.0


@dataclass
class Stack:
    backend: Backend
    schedulers: Cluster
    workers: Cluster
    executions: Path

    def noted(self) -> list[dict[str, Any]]:
        """What the job functions noted, in order."""
        if not self.executions.exists():
            return []
        return [json.loads(line) for line in self.executions.read_text().splitlines() if line]

    def starts(self, job_id: str) -> list[dict[str, Any]]:
        return [n for n in self.noted() if n["event"] == "start" and n["job_id"] == job_id]

    def runs(self, job_id: str) -> list[Run]:
        return [run for run in all_runs(self.backend) if run.job_id == job_id]

    def worker_ids(self) -> set[str]:
        return {replica.instance_id for replica in self.workers.every}

    def wait(self, what: str, predicate: Any, within: float = WITHIN) -> Any:
        deadline = time.monotonic() + within
        while True:
            self.schedulers.check_alive()
            self.workers.check_alive()
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within}s: {what}")
            time.sleep(0.2)


@pytest.fixture(params=["postgres", "redis"])
def engine_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def start_stack(
    url: str, workdir: Path, backend: Backend, source: str, started: list[Cluster], **env: str
) -> Stack:
    """A leader and two workers on ``url`` running the jobs of ``source``."""
    (workdir / "scheduled_jobs.py").write_text(
        "from sundial import every, job\nimport worker_jobs\n\n" + source
    )
    executions = workdir / "executions.jsonl"
    shared = {
        "SUNDIAL_EXECUTOR": "queue",
        "SUNDIAL_TEST_EXECUTIONS": str(executions),
        "PYTHONPATH": os.pathsep.join([str(workdir), str(E2E_DIR)]),
        **env,
    }
    options: dict[str, Any] = {
        "lease_seconds": LEASE_SECONDS,
        "job_modules": "scheduled_jobs",
        "env": shared,
    }
    schedulers = Cluster(url, workdir, size=1, **options)
    started.append(schedulers.__enter__())
    schedulers.wait_for_role("leader", within=WITHIN)
    workers = Cluster(url, workdir, size=2, kind=WORKER, name="worker", **options)
    started.append(workers.__enter__())
    return Stack(backend, schedulers, workers, executions)


@pytest.fixture
def stack_for(engine_url: str, tmp_path: Path) -> Iterator[Any]:
    """``stack_for(jobs_source)``: a leader and two workers running the given jobs."""
    started: list[Cluster] = []
    backend = open_backend(engine_url)

    def start(source: str, **env: str) -> Stack:
        return start_stack(engine_url, tmp_path, backend, source, started, **env)

    yield start
    for cluster in reversed(started):
        cluster.__exit__()
    backend.close()


def by_attempt(notes: list[dict[str, Any]]) -> Counter[tuple[str, str, int]]:
    return Counter((n["job_id"], n["scheduled_time"], n["attempt"]) for n in notes)


def test_runs_execute_on_the_workers_spread_across_them(stack_for: Any) -> None:
    # More work each second than one worker taking one run at a time can do.
    stack: Stack = stack_for(
        "".join(
            f'quick{n} = job(every(seconds=1), id="quick{n}", max_instances=10)'
            "(worker_jobs.quick)\n"
            for n in range(4)
        ),
        SUNDIAL_WORKER_CONCURRENCY="1",
    )

    def successes() -> list[Run]:
        return [
            r for n in range(4) for r in stack.runs(f"quick{n}") if r.outcome is Outcome.SUCCESS
        ]

    stack.wait("both workers running jobs", lambda: len({r.instance_id for r in successes()}) == 2)
    runs = successes()
    ran_on = {run.instance_id for run in runs}
    assert ran_on == stack.worker_ids(), ran_on  # both workers, and none in the scheduler
    worker_pids = {replica.process.pid for replica in stack.workers.every}
    starts = [n for job in range(4) for n in stack.starts(f"quick{job}")]
    assert starts and {n["pid"] for n in starts} <= worker_pids
    assert max(by_attempt(starts).values()) == 1

    # Each worker exports the run metrics of the runs it executed, lint-clean, with every
    # family the alert rules and the dashboard read from the workers.
    succeeded = 0.0
    for replica in stack.workers.every:
        text = httpx.get(f"http://127.0.0.1:{replica.port}/metrics", timeout=10).text
        lint = subprocess.run(
            [*command("promtool"), "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
        declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
        missing = promql.EXPORTED[conventions.WORKER.name] - declared
        assert not missing, f"metrics a worker does not export: {sorted(missing)}"
        succeeded += sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("sundial_job_runs_total{") and 'outcome="success"' in line
        )
    assert succeeded >= 1


def test_a_worker_killed_mid_run_is_interrupted_and_retried_on_the_other(
    stack_for: Any,
) -> None:
    stack: Stack = stack_for(
        'long_sync = job(every(seconds=3), id="long_sync", retries=1, max_instances=1)'
        "(worker_jobs.long_sync)\n"
    )
    running: Run = stack.wait(
        "long_sync running on a worker",
        lambda: next((r for r in stack.runs("long_sync") if r.outcome is Outcome.RUNNING), None),
    )
    victim = next(r for r in stack.workers.live() if r.instance_id == running.instance_id)
    victim.kill()

    interrupted = stack.wait(
        "the killed worker's run recorded interrupted",
        lambda: (r := stack.backend.get_run(running.run_id)) and r.outcome is Outcome.INTERRUPTED,
    )
    assert interrupted
    retried: Run = stack.wait(
        "its next attempt succeeding on the other worker",
        lambda: next(
            (
                r
                for r in stack.runs("long_sync")
                if r.scheduled_time == running.scheduled_time
                and r.attempt == 2
                and r.outcome is Outcome.SUCCESS
            ),
            None,
        ),
    )
    assert retried.instance_id != victim.instance_id
    assert max(by_attempt(stack.starts("long_sync")).values()) == 1


def test_max_instances_holds_across_workers(stack_for: Any) -> None:
    stack: Stack = stack_for(
        'overlapping = job(every(seconds=1), id="overlapping", max_instances=1)'
        "(worker_jobs.overlapping)\n"
    )
    stack.wait("three runs of overlapping done", lambda: len(_ended(stack, "overlapping")) >= 3)

    spans = _spans(stack, "overlapping")
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"runs overlapped: {spans}"
    skipped = [r for r in stack.runs("overlapping") if r.outcome is Outcome.SKIPPED]
    assert skipped and "max_instances=1" in (skipped[0].error_message or "")


def test_the_job_timeout_is_enforced_on_the_worker(stack_for: Any) -> None:
    stack: Stack = stack_for(
        'hang = job(every(seconds=2), id="hang", timeout="0.5s")(worker_jobs.hang)\n'
    )

    timed_out: Run = stack.wait(
        "a timed-out run of hang",
        lambda: next((r for r in stack.runs("hang") if r.outcome is Outcome.TIMEOUT), None),
    )
    assert timed_out.instance_id in stack.worker_ids()
    assert timed_out.duration_seconds is not None
    assert timed_out.duration_seconds < within(0.5)


@pytest.mark.parametrize("engine_url", ["postgres"], indirect=True)
def test_a_worker_names_the_job_that_blocks_its_event_loop(stack_for: Any) -> None:
    stack: Stack = stack_for(
        'blocker = job(every(seconds=2), id="blocker")(worker_jobs.block_loop)\n'
        'polite = job(every(seconds=1), id="polite")(worker_jobs.quick)\n',
        SUNDIAL_WORKER_CONCURRENCY="4",
    )

    blocked: Run = stack.wait(
        "a finished run of blocker",
        lambda: next((r for r in stack.runs("blocker") if r.outcome is Outcome.SUCCESS), None),
    )
    polite: list[Run] = stack.wait(
        "a finished run of polite",
        lambda: [r for r in stack.runs("polite") if r.outcome is Outcome.SUCCESS],
    )

    assert blocked.instance_id in stack.worker_ids()
    assert 1.0 <= blocked.event_loop_blocked_seconds < 3.0
    assert all(r.event_loop_blocked_seconds == 0.0 for r in polite)


def test_sigterm_lets_a_worker_finish_its_run(stack_for: Any) -> None:
    stack: Stack = stack_for(
        'long_sync = job(every(seconds=3), id="long_sync", max_instances=1)'
        "(worker_jobs.long_sync)\n",
        SUNDIAL_TEST_LONG_SECONDS="2",
    )
    running: Run = stack.wait(
        "long_sync running on a worker",
        lambda: next((r for r in stack.runs("long_sync") if r.outcome is Outcome.RUNNING), None),
    )
    worker = next(r for r in stack.workers.live() if r.instance_id == running.instance_id)
    worker.process.send_signal(signal.SIGTERM)
    worker.ended_on_purpose = True

    assert worker.process.wait(timeout=WITHIN) == 0
    finished = stack.backend.get_run(running.run_id)
    assert finished is not None and finished.outcome is Outcome.SUCCESS


def _ended(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    return [n for n in stack.noted() if n["event"] == "end" and n["job_id"] == job_id]


def _spans(stack: Stack, job_id: str) -> list[tuple[float, float]]:
    """(start, end) of each finished execution, in start order."""
    notes = [n for n in stack.noted() if n["job_id"] == job_id]
    starts = {(n["scheduled_time"], n["attempt"]): n["at"] for n in notes if n["event"] == "start"}
    ends = {(n["scheduled_time"], n["attempt"]): n["at"] for n in notes if n["event"] == "end"}
    return sorted((starts[key], ends[key]) for key in ends if key in starts)


CHAOS_SECONDS = float(os.environ.get("SUNDIAL_CHAOS_SECONDS", "25"))


def test_killing_workers_and_leaders_never_runs_an_attempt_twice(
    stack_for: Any, engine_url: str, tmp_path: Path
) -> None:
    """Workers and leaders SIGKILLed again and again: no attempt of any fire time runs
    twice, and once things settle every run has ended with a recorded outcome."""
    stack: Stack = stack_for(
        'quick = job(every(seconds=1), id="quick", max_instances=10)(worker_jobs.quick)\n'
        'long_sync = job(every(seconds=2), id="long_sync", retries=2, max_instances=2)'
        "(worker_jobs.long_sync)\n",
        SUNDIAL_TEST_LONG_SECONDS="2",
    )
    stack.schedulers.spawn(1)  # a standby to take over
    rng = random.Random(7)
    kills = 0
    deadline = time.monotonic() + CHAOS_SECONDS
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(2, 4))
        cluster = stack.workers if rng.random() < 0.6 else stack.schedulers
        victim = rng.choice(cluster.live())
        victim.kill()
        kills += 1
        cluster.spawn(victim.slot)

    chaos_over = datetime.now(UTC)

    def unfinished() -> list[Run]:
        return [
            r
            for r in all_runs(stack.backend)
            if r.scheduled_time < chaos_over and r.outcome in (Outcome.QUEUED, Outcome.RUNNING)
        ]

    # The survivors settle what the kills left: runs of dead workers interrupted (and
    # retried), queued runs taken or missed.
    stack.wait("every run from the chaos ended", lambda: not unfinished(), within=60)
    stack.schedulers.stop()
    stack.workers.stop()
    starts = by_attempt(stack.starts("quick") + stack.starts("long_sync"))
    twice = {key: count for key, count in starts.items() if count > 1}
    runs = all_runs(stack.backend)
    recorded = {(r.job_id, r.scheduled_time.isoformat(), r.attempt) for r in runs}
    lost = set(starts) - recorded
    print(  # noqa: T201
        f"\n[{stack.backend.kind}] worker chaos {CHAOS_SECONDS:g}s: {kills} kills, "
        f"{len(starts)} attempts started, {len(runs)} runs recorded, "
        f"{len(twice)} run twice, {len(lost)} lost"
    )
    assert kills >= 5
    assert not twice, f"attempts run more than once: {twice}"
    assert not lost, f"runs that started have no record: {sorted(lost)}"


def test_a_redis_crash_under_queued_and_running_runs_loses_none_and_runs_none_twice(
    tmp_path: Path,
) -> None:
    """Redis (append-only file, fsync on every write) SIGKILLed and started again while
    the workers hold running runs and the queue holds more: every run from before the
    crash ends recorded, and no attempt runs twice."""
    started: list[Cluster] = []
    with redis_server() as server:
        backend = open_backend(server.url)
        try:
            stack = start_stack(
                server.url,
                tmp_path,
                backend,
                'quick = job(every(seconds=1), id="quick", max_instances=10)(worker_jobs.quick)\n'
                'long_sync = job(every(seconds=1), id="long_sync", retries=1, max_instances=4)'
                "(worker_jobs.long_sync)\n",
                started,
                SUNDIAL_TEST_LONG_SECONDS="2",
            )
            stack.wait("long runs in flight", lambda: len(stack.starts("long_sync")) >= 3)
            server.crash()
            time.sleep(2)
            server.start()
            back = datetime.now(UTC)

            def unfinished() -> list[Run]:
                return [
                    r
                    for r in all_runs(backend)
                    if r.scheduled_time < back and r.outcome in (Outcome.QUEUED, Outcome.RUNNING)
                ]

            stack.wait(
                "a run after the restart",
                lambda: any(r.started_at and r.started_at > back for r in stack.runs("quick")),
                within=within(15),
            )
            stack.wait("every run from before the restart ended", lambda: not unfinished(), 90)
            assert set(stack.schedulers.stop().values()) == {0}
            assert set(stack.workers.stop().values()) == {0}
            starts = by_attempt(stack.starts("quick") + stack.starts("long_sync"))
            runs = all_runs(backend)
        finally:
            for cluster in reversed(started):
                cluster.__exit__()
            backend.close()

    twice = {key: count for key, count in starts.items() if count > 1}
    assert not twice, f"attempts run more than once: {twice}"
    recorded = {(r.job_id, r.scheduled_time.isoformat(), r.attempt) for r in runs}
    assert set(starts) <= recorded, "a run that started has no record"
