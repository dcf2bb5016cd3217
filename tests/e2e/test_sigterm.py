"""One SIGTERM stops a loaded process, every time.

A scheduler leading a few hundred jobs due every second, and a worker taking their runs,
each get exactly one SIGTERM, sent just after a second's fire times were handed over
(when the event loop is busiest). Each must exit on its own within its shutdown grace
plus a generous margin, and leave nothing behind: the leader lock free for the next
leader, none of the leader's runs left ``running``, the instance gone from the list.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from failover import WORKER, Cluster, Replica

from sundial.backends import Backend, open_backend
from sundial.models import Outcome, Run

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 2
#: generous: the machine running the suite may be busy; a lost signal never exits
EXIT_MARGIN_SECONDS = 20
#: how far past a whole second each round's signal lands, one round each (CI time is
#: short; ``make bench`` repeats the leader's case ten times)
OFFSETS = (0.02, 0.3)
#: a worker starts slower (its engine, the backlog of queued runs): one round
WORKER_OFFSETS = OFFSETS[:1]
LOAD = {"SUNDIAL_TEST_LOAD_JOBS": "300"}


@pytest.fixture(params=["postgres", "redis"])
def loaded_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def wait_for_runs(backend: Backend, replica: Replica, count: int, within: float = 60) -> None:
    """Until ``replica`` has started ``count`` of the latest runs."""
    deadline = time.monotonic() + within
    while (
        sum(run.instance_id == replica.instance_id for run in backend.list_runs(limit=1000)) < count
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"{replica.instance_id} started no {count} runs within {within}s")
        time.sleep(0.1)


def sigterm_once(replica: Replica, offset: float) -> int:
    """Send one SIGTERM ``offset`` seconds past the next whole second; the exit code."""
    now = time.time()
    time.sleep(1 - now % 1 + offset)
    replica.terminate()
    try:
        return replica.process.wait(timeout=GRACE_SECONDS + EXIT_MARGIN_SECONDS)
    except subprocess.TimeoutExpired:
        tail = replica.log_path.read_text(errors="replace")[-2000:]
        raise AssertionError(f"{replica.instance_id} ignored its one SIGTERM:\n{tail}") from None


def running_runs(backend: Backend, instance_id: str) -> list[Run]:
    runs = backend.list_runs(outcome=Outcome.RUNNING, limit=1000)
    return [run for run in runs if run.instance_id == instance_id]


def listed(backend: Backend, instance_id: str) -> bool:
    return instance_id in {instance.id for instance in backend.list_instances()}


def test_a_loaded_leader_stops_on_one_sigterm(loaded_url: str, tmp_path: Path) -> None:
    backend = open_backend(loaded_url)
    backend.setup()
    cluster = Cluster(
        loaded_url, tmp_path, size=0, grace_seconds=GRACE_SECONDS, job_modules="load_jobs", env=LOAD
    )
    try:
        for offset in OFFSETS:
            leader = cluster.spawn(0)
            wait_for_runs(backend, leader, 30)
            assert sigterm_once(leader, offset) == 0
            assert backend.acquire_leadership("next-leader", 5), "the leader lock was not released"
            backend.release_leadership("next-leader")
            assert not running_runs(backend, leader.instance_id)
            assert not listed(backend, leader.instance_id)
    finally:
        cluster.__exit__()
        backend.close()


def test_a_loaded_worker_stops_on_one_sigterm(loaded_url: str, tmp_path: Path) -> None:
    backend = open_backend(loaded_url)
    backend.setup()
    options: dict[str, Any] = {
        "grace_seconds": GRACE_SECONDS,
        "job_modules": "load_jobs",
        "env": {**LOAD, "SUNDIAL_EXECUTOR": "queue"},
    }
    schedulers = Cluster(loaded_url, tmp_path, size=1, **options)
    workers = Cluster(loaded_url, tmp_path, size=0, kind=WORKER, name="worker", **options)
    try:
        schedulers.__enter__()
        for offset in WORKER_OFFSETS:
            worker = workers.spawn(0)
            wait_for_runs(backend, worker, 20)
            assert sigterm_once(worker, offset) == 0
            # Every run it started ended recorded: finished, or interrupted and retried.
            assert not running_runs(backend, worker.instance_id)
            assert not listed(backend, worker.instance_id)
    finally:
        workers.__exit__()
        schedulers.__exit__()
        backend.close()
