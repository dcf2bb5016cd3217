"""Resident memory of one scheduler process holding the filled store (see catalog.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.runner import run_worker

#: a Sundial leader reads every stored job and catalog entry at start-up
MEMORY_TIMEOUT_SECONDS = 900.0


def measure_memory(side: str, url: str, *, log: Path) -> dict[str, Any]:
    """VmRSS/VmHWM (KiB) of a ``side`` scheduler once it has settled, with start-up times."""
    return run_worker(["memory", side, url], log=log, timeout=MEMORY_TIMEOUT_SECONDS)
