"""Redis failover with the default lease: a dead leader goes at once, a stuck one by lease.

The leader holds its lock through a connection named after it. Killed with SIGKILL, its
connection is gone from the server and a standby takes over well before the lease would
have run out; frozen with SIGSTOP, its connection stays open and only the lease ends its
term. Either way no fire time runs twice. How long each takes is ``make bench``'s.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from failover import Cluster, all_runs, duplicate_fire_times, first_start, now

from sundial.backends import Backend
from sundial.config import Settings
from sundial.constants import heartbeat_interval

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.parametrize("backend_url", ["redis"], indirect=True),
]

LEASE_SECONDS = Settings.model_fields["leader_lease_seconds"].default
TICK_SECONDS = heartbeat_interval(LEASE_SECONDS)


def test_a_killed_leader_is_replaced_before_its_lease_runs_out(
    backend_url: str, backend: Backend, tmp_path: Path
) -> None:
    with Cluster(backend_url, tmp_path, lease_seconds=LEASE_SECONDS, size=2) as cluster:
        leader = cluster.wait_for_leader(backend, within=60)
        for _ in range(2):
            killed_at = leader.kill()
            cluster.spawn(leader.slot)
            successor = cluster.wait_for_leader(backend, within=60, after=killed_at)
            took_over = first_start(all_runs(backend), after=killed_at, by=successor.instance_id)
            assert took_over is not None
            # The last renewal was at most a tick before the kill, so the lease alone
            # would have kept the lock at least this long.
            lease_left = timedelta(seconds=LEASE_SECONDS - TICK_SECONDS)
            assert took_over - killed_at < lease_left, took_over - killed_at
            leader = successor
        cluster.wait_for_role("standby", within=60)  # the last replacement is up
        codes = cluster.stop()
        assert set(codes.values()) == {0}, codes
        taken_over = cluster.events("leadership.taken_over")

    assert len(taken_over) == 2, taken_over
    assert duplicate_fire_times(all_runs(backend)) == []


def test_a_frozen_leader_keeps_its_lock_until_the_lease_runs_out(
    backend_url: str, backend: Backend, tmp_path: Path
) -> None:
    with Cluster(backend_url, tmp_path, lease_seconds=LEASE_SECONDS, size=2) as cluster:
        frozen = cluster.wait_for_leader(backend, within=60)
        stopped_at = now()
        frozen.process.send_signal(signal.SIGSTOP)
        try:
            successor = cluster.wait_for_leader(backend, within=60, after=stopped_at)
            took_over = first_start(all_runs(backend), after=stopped_at, by=successor.instance_id)
        finally:
            frozen.process.send_signal(signal.SIGCONT)
        time.sleep(3 * TICK_SECONDS)
        assert frozen.role() == "standby"
        codes = cluster.stop()
        assert set(codes.values()) == {0}, codes
        assert cluster.events("leadership.taken_over") == []

    assert took_over is not None
    # Its last renewal was at most one tick before it froze: the lease ran from there.
    assert took_over - stopped_at >= timedelta(seconds=LEASE_SECONDS - TICK_SECONDS)
    assert duplicate_fire_times(all_runs(backend)) == []
