"""Run ids: random version-4 UUIDs, unique within a process and across forked ones."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime

from sundial.models import Run, new_id


def test_run_ids_are_version_4_uuids_in_hex() -> None:
    parsed = uuid.UUID(new_id())
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    run = Run(job_id="j", scheduled_time=datetime(2026, 1, 1, tzinfo=UTC))
    assert uuid.UUID(run.run_id).version == 4


def test_run_ids_do_not_repeat() -> None:
    ids = {new_id() for _ in range(100_000)}
    assert len(ids) == 100_000


def _child_ids(queue: multiprocessing.Queue[list[str]]) -> None:
    queue.put([new_id() for _ in range(100)])


def test_forked_processes_draw_different_ids() -> None:
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    child = context.Process(target=_child_ids, args=(queue,))
    child.start()
    theirs = set(queue.get(timeout=30))
    child.join()
    ours = {new_id() for _ in range(100)}
    assert not theirs & ours
