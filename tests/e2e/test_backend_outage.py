"""The backend server dies and comes back under running schedulers, which must survive it.

Each test starts a private server (the machine's shared Postgres and Redis serve other
tests), runs a leader and a standby on it, crashes the server, waits, starts it again
on the same port, and asserts that no scheduler exited, jobs run again, every run a
scheduler logged as recorded is still in the history, and no live scheduler's run was
taken for orphaned.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from failover import (
    Cluster,
    all_runs,
    duplicate_fire_times,
    first_start,
    now,
    unfinished,
)
from servers import Server, postgres_server, redis_server

from sundial.backends import Backend, BackendError, open_backend
from sundial.models import Outcome

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

LEASE_SECONDS = 3.0
OUTAGE_SECONDS = 5.0
FROZEN_SECONDS = 1.5


@pytest.fixture(params=["postgres", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with postgres_server() if request.param == "postgres" else redis_server() as server:
        yield server


@pytest.fixture
def backend(server: Server) -> Iterator[Backend]:
    instance = open_backend(server.url)
    instance.setup()
    yield instance
    instance.close()


def watch(cluster: Cluster, seconds: float) -> set[str]:
    """Keep checking that no replica exits; the roles /readyz reported as not ready."""
    not_ready: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cluster.check_alive()
        for replica in cluster.live():
            if replica.ready() is False:
                not_ready.add(replica.instance_id)
        time.sleep(0.2)
    return not_ready


def recorded_before(backend: Backend, within: float = 30) -> dict[str, Outcome]:
    """The finished runs in the history once a few have been recorded."""
    deadline = time.monotonic() + within
    while True:
        finished = {
            run.run_id: run.outcome for run in all_runs(backend) if run.finished_at is not None
        }
        if sum(outcome is Outcome.SUCCESS for outcome in finished.values()) >= 6:
            return finished
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(finished)} runs recorded within {within}s")
        time.sleep(0.2)


def test_schedulers_survive_a_backend_crash_and_lose_no_recorded_run(
    server: Server, backend: Backend, tmp_path: Path
) -> None:
    debug = {"SUNDIAL_LOG_LEVEL": "DEBUG"}  # for the writer's run.recorded events
    with Cluster(
        server.url, tmp_path, size=2, lease_seconds=LEASE_SECONDS, grace_seconds=10, env=debug
    ) as cluster:
        first = cluster.wait_for_leader(backend, within=30)
        before = recorded_before(backend)

        server.crash()
        with pytest.raises(BackendError):
            backend.ping()
        not_ready = watch(cluster, OUTAGE_SECONDS - FROZEN_SECONDS)
        # Freeze the leader across the restart, so that the standby takes over while the
        # old leader still has runs in flight and an old heartbeat: the new leader must
        # not take it for dead.
        first.process.send_signal(signal.SIGSTOP)
        time.sleep(FROZEN_SECONDS)
        server.start()
        back_at = now()
        time.sleep(FROZEN_SECONDS)
        first.process.send_signal(signal.SIGCONT)

        leader = cluster.wait_for_leader(backend, within=60, after=back_at)
        assert leader is not first
        watch(cluster, 3)
        codes = cluster.stop()
        assert set(codes.values()) == {0}, codes

    runs = all_runs(backend)
    stored = {run.run_id: run for run in runs}
    recorded = {event["run_id"] for event in cluster.events("run.recorded")}
    assert not_ready == {replica.instance_id for replica in cluster.every}, (
        "/readyz should say not ready while the backend is down"
    )
    # Every scheduler lived through the outage: none of their runs was theirs to sweep.
    assert cluster.events("runs.interrupted") == []
    assert recorded, "the schedulers logged no run as recorded"
    assert recorded <= stored.keys(), f"recorded runs lost: {recorded - stored.keys()}"
    assert {run_id: stored[run_id].outcome for run_id in before if run_id in stored} == before
    assert first_start(runs, after=back_at, by=leader.instance_id) is not None
    assert duplicate_fire_times(runs) == []
    assert unfinished(runs) == []
