"""Logging written behind, by a thread of its own: every line still arrives, in order."""

from __future__ import annotations

import json
import subprocess
import sys

LINES = 2_000

PROGRAM = f"""
import structlog
from sundial.logging import configure_logging

configure_logging(log_format="json", level="INFO", write_behind=True)
log = structlog.get_logger("test")
for number in range({LINES}):
    log.info("run.finished", number=number)
try:
    raise ValueError("boom")
except ValueError:
    log.exception("run.failed")
"""


def test_every_line_written_behind_is_out_before_the_process_exits() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=True
    )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [event["number"] for event in events[:-1]] == list(range(LINES))
    assert events[-1]["event"] == "run.failed"
    assert "ValueError: boom" in events[-1]["exception"]
