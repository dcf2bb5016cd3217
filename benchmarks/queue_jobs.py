"""The jobs of the queue benchmark, imported by its scheduler and worker processes.

``SUNDIAL_BENCH_JOBS`` jobs, each due every second, all running one trivial coroutine:
what is measured is getting runs to a worker, not the work.
"""

from __future__ import annotations

import os

from sundial import every, job

#: every fire time runs however late, so that lag is measured rather than hidden
GRACE_SECONDS = 3_600
MAX_INSTANCES = 3
JOBS = int(os.environ.get("SUNDIAL_BENCH_JOBS", "100"))


async def tick() -> None:
    """Nothing: the run's recorded start is the measurement."""


for _index in range(JOBS):
    job(
        every(seconds=1),
        id=f"bench-{_index:06d}",
        misfire_grace_time=GRACE_SECONDS,
        max_instances=MAX_INSTANCES,
    )(tick)
