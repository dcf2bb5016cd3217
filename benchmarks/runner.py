"""Runs :mod:`benchmarks.worker` scenarios in subprocesses and reads their answer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class WorkerFailed(RuntimeError):
    """A benchmark subprocess exited without an answer; the message has its log's tail."""


def run_worker(
    args: list[str], *, log: Path, timeout: float, module: str = "benchmarks.worker"
) -> dict[str, Any]:
    """``python -m MODULE ARGS``; its last stdout line, parsed as JSON."""
    with log.open("ab") as errors:
        try:
            done = subprocess.run(
                [sys.executable, "-m", module, *args],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=errors,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise WorkerFailed(f"worker {args[:2]} took over {timeout:.0f}s; see {log}") from None
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = log.read_text(errors="replace")[-2000:]
        raise WorkerFailed(f"worker {args[:2]} exited with {done.returncode}:\n{tail}")
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer
