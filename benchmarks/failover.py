"""Failover: SIGKILL (or SIGSTOP) the leader, time until the new leader starts a run.

The machinery (replica processes, finding the leader, reading run history) is the chaos
test's, in ``tests/e2e/failover.py``; this module only kills a fixed number of times.
A SIGSTOPped leader is the partitioned-but-alive case: its process and its connections
stay, so only its lease ends its term; it is resumed (SIGCONT) once the new leader runs,
and must then stand down without running a fire time the new leader ran. Plain
APScheduler has no counterpart: it cannot run two schedulers on one store.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.runner import REPO
from sundial.backends import open_backend

E2E_DIR = REPO / "tests" / "e2e"
#: between two kills, so that each outage is a separate one
SETTLE_SECONDS = 2.0
#: replicas, as in the compose stack: a leader and one standby
REPLICAS = 2


def cluster_helpers() -> Any:
    """The e2e tests' ``failover`` module: :class:`Cluster` and the run-history arithmetic."""
    if str(E2E_DIR) not in sys.path:
        sys.path.insert(0, str(E2E_DIR))
    import failover  # type: ignore[import-not-found]  # tests/e2e, put on the path above

    return failover


def measure_failover(
    url: str, *, kills: int, lease_seconds: float, workdir: Path, stop: bool = False
) -> dict[str, Any]:
    """Median and max seconds from each kill to the next run started by another replica,
    and the fire times run twice (first attempts); ``stop`` pauses the leader instead."""
    helpers = cluster_helpers()
    Cluster, Kill, now = helpers.Cluster, helpers.Kill, helpers.now

    backend = open_backend(url)
    backend.setup()
    workdir.mkdir(parents=True, exist_ok=True)
    done: list[Any] = []
    bound = 3 * lease_seconds + 30
    try:
        with Cluster(url, workdir, size=REPLICAS, lease_seconds=lease_seconds) as cluster:
            leader = cluster.wait_for_leader(backend, within=bound)
            for _ in range(kills):
                time.sleep(SETTLE_SECONDS)
                leader = cluster.leader() or leader
                if stop:
                    kill = Kill(leader.instance_id, now())
                    leader.process.send_signal(signal.SIGSTOP)
                else:
                    kill = Kill(leader.instance_id, leader.kill())
                    cluster.spawn(leader.slot)
                done.append(kill)
                paused = leader
                leader = cluster.wait_for_leader(backend, within=bound, after=kill.at)
                if stop:
                    paused.process.send_signal(signal.SIGCONT)
            time.sleep(SETTLE_SECONDS)
            cluster.stop()
        runs = helpers.all_runs(backend)
        report: dict[str, Any] = helpers.summarise(helpers.failover_seconds(done, runs))
    finally:
        backend.close()
    twice = helpers.duplicate_fire_times(runs)
    return report | {"lease_s": lease_seconds, "duplicates": len(twice)}
