"""A load a user would write: ``SUNDIAL_TEST_LOAD_JOBS`` jobs due every second, each a
trivial coroutine with ``max_instances=1`` and ``coalesce=True`` (default 300).

All are due on every whole second together, as ``cron(second="*")`` would be in
APScheduler (Sundial's cron has minutes as its finest field).

Imported by scheduler and worker subprocesses in the SIGTERM tests and the benchmark.
"""

import os
from datetime import UTC, datetime

from sundial import every, job

JOBS = int(os.environ.get("SUNDIAL_TEST_LOAD_JOBS", "300"))
WHOLE_SECONDS = every(seconds=1, start_date=datetime(2026, 1, 1, tzinfo=UTC))


async def tick() -> None:
    """Does nothing: the load is the scheduling itself."""


for number in range(JOBS):
    job(WHOLE_SECONDS, id=f"load_{number:05d}", max_instances=1, coalesce=True)(tick)
