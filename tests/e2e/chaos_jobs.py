"""Jobs for the failover and outage tests (imported by the scheduler subprocesses).

Every job but ``slow_async`` fires each second, so a failover shows up in run history
as a gap of at most a few fire times; ``slow_async`` keeps runs in flight, so that a
killed leader leaves runs to mark ``interrupted`` and a stopping one has runs to drain.
"""

import asyncio
import time

from sundial import every, job

#: seconds between fire times of the every-second jobs (the gap checks use it)
INTERVAL_SECONDS = 1
#: the jobs whose every fire time should run, and so whose gaps are checked
EVERY_SECOND_JOBS = ("fast_async", "coalesced_async", "sync_work")


@job(every(seconds=INTERVAL_SECONDS), id="fast_async")
async def fast_async() -> None:
    await asyncio.sleep(0.05)


@job(every(seconds=INTERVAL_SECONDS), id="coalesced_async", coalesce=True)
async def coalesced_async() -> None:
    await asyncio.sleep(0.1)


@job(every(seconds=INTERVAL_SECONDS), id="sync_work")
def sync_work() -> None:
    time.sleep(0.2)


@job(every(seconds=2), id="slow_async", max_instances=3)
async def slow_async() -> None:
    await asyncio.sleep(4)
