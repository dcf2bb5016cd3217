"""What the event-loop monitor costs: a Sundial leader's CPU with it on and off.

The same async jobs every second, the same window; the runs alternate on, off, on, off,
and the lower CPU of each setting counts, so that a neighbour's burst on these shared
machines weighs less.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.runner import run_worker

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
