"""What the event-loop monitor costs: a Sundial leader's CPU with it on and off.

The same async jobs every second, the same window; the runs alternate on, off, on, off,
and the lower CPU of each setting counts, so that a neighbour's burst on these shared
machines weighs less. That difference is smaller than the noise between two runs with the
same setting, so the monitor's own work is also timed apart (:func:`measure_monitor_parts`):
what watching one run adds, and what its beat and watchdog cost a second on an idle loop.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from benchmarks.runner import run_worker
from sundial_scheduler.loop_monitor import LoopMonitor

MONITOR_JOBS = 200
MONITOR_SECONDS = 10
REPEATS = 2
TIMEOUT_SECONDS = 120.0


def measure_monitor(url: str, *, log: Path) -> dict[str, Any]:
    """Lowest CPU seconds over the window with the monitor ``on`` and ``off``."""
    samples: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for _ in range(REPEATS):
        for setting in samples:
            args = ["monitor", "sundial", url, "--jobs", str(MONITOR_JOBS)]
            args += ["--fires", str(MONITOR_SECONDS), "--monitor", setting]
            samples[setting].append(run_worker(args, log=log, timeout=TIMEOUT_SECONDS))
    best = {setting: min(s["cpu_s"] for s in runs) for setting, runs in samples.items()}
    return {"samples": samples, "best": best, "jobs": MONITOR_JOBS, "seconds": MONITOR_SECONDS}


#: runs watched, and without the monitor, for the per-run figure
PART_RUNS = 200_000
#: how long the monitor beats on an idle loop for the per-second figure
IDLE_SECONDS = 5.0


def measure_monitor_parts() -> dict[str, float]:
    """CPU seconds the monitor adds per watched run, and per second of beating."""
    return asyncio.run(_parts())


async def _parts() -> dict[str, float]:
    monitor = LoopMonitor(threshold=0.5, on_blocked=lambda watch, seconds: None)

    async def runs(watched: bool) -> float:
        begun = time.process_time()
        for number in range(PART_RUNS):
            if watched:
                with monitor.watching("job", str(number)):
                    pass
        return time.process_time() - begun

    bare = min([await runs(False) for _ in range(3)])
    idle_begun = time.process_time()
    await asyncio.sleep(IDLE_SECONDS)
    idle = time.process_time() - idle_begun
    monitor.start(asyncio.get_running_loop())
    try:
        beating_begun = time.process_time()
        await asyncio.sleep(IDLE_SECONDS)
        beating = time.process_time() - beating_begun
        watched = min([await runs(True) for _ in range(3)])
    finally:
        monitor.stop()
    return {
        "per_run_s": max(watched - bare, 0.0) / PART_RUNS,
        "per_second_s": max(beating - idle, 0.0) / IDLE_SECONDS,
    }
