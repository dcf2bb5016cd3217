"""Jobs for the process-level test (imported by the scheduler subprocess)."""

import asyncio

from sundial import every, job


@job(every(seconds=1), id="every_second")
async def every_second() -> None:
    await asyncio.sleep(0.01)


@job(every(seconds=1), id="long_haul", max_instances=1)
async def long_haul() -> None:
    await asyncio.sleep(60)
