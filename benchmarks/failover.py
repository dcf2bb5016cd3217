"""Failover: SIGKILL the leader, time until the new leader starts a run.

The machinery (replica processes, finding the leader, reading run history) is the chaos
test's, in ``tests/e2e/failover.py``; this module only kills a fixed number of times.
Plain APScheduler has no counterpart: it cannot run two schedulers on one store.
"""

from __future__ import annotations

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


def measure_failover(
    url: str, *, kills: int, lease_seconds: float, workdir: Path
) -> dict[str, Any]:
    """Median and max seconds from each kill to the next run started by another replica."""
    if str(E2E_DIR) not in sys.path:
        sys.path.insert(0, str(E2E_DIR))
    from failover import (  # type: ignore[import-not-found]  # tests/e2e, put on the path above
        Cluster,
        Kill,
        all_runs,
        failover_seconds,
        summarise,
    )

    backend = open_backend(url)
    backend.setup()
    workdir.mkdir(parents=True, exist_ok=True)
    done: list[Kill] = []
    bound = 3 * lease_seconds + 30
    try:
        with Cluster(url, workdir, size=REPLICAS, lease_seconds=lease_seconds) as cluster:
            leader = cluster.wait_for_leader(backend, within=bound)
            for _ in range(kills):
                time.sleep(SETTLE_SECONDS)
                leader = cluster.leader() or leader
                kill = Kill(leader.instance_id, leader.kill())
                done.append(kill)
                cluster.spawn(leader.slot)
                leader = cluster.wait_for_leader(backend, within=bound, after=kill.at)
            cluster.stop()
        report: dict[str, Any] = summarise(failover_seconds(done, all_runs(backend)))
    finally:
        backend.close()
    return report | {"lease_s": lease_seconds}
