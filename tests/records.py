"""Catalog entries, runs and heartbeats as the unit tests build them.

Times count from ``now``: by default the moment this module was imported, which tests that
compare exact times rely on; tests that show times relative to the clock pass their own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sundial.models import Instance, InstanceRole, JobView, Outcome, Run
from sundial.triggers import CronSpec

NOW = datetime.now(UTC)


def make_job(job_id: str, *, now: datetime = NOW, **changes: Any) -> JobView:
    trigger = changes.pop("trigger", CronSpec(expression="*/5 * * * *"))
    changes.setdefault("next_run_time", now + timedelta(minutes=5))
    changes.setdefault("name", job_id.replace("_", " ").title())
    return JobView(
        id=job_id,
        func=f"jobs.example:{job_id}",
        trigger=trigger,
        trigger_text=trigger.describe(),
        **changes,
    )


def make_run(
    job_id: str, outcome: Outcome, minutes_ago: float, *, now: datetime = NOW, **changes: Any
) -> Run:
    scheduled = now - timedelta(minutes=minutes_ago)
    final = outcome is not Outcome.RUNNING
    return Run(
        job_id=job_id,
        scheduled_time=scheduled,
        started_at=scheduled,
        finished_at=scheduled + timedelta(seconds=2) if final else None,
        duration_seconds=2.0 if final else None,
        outcome=outcome,
        **({"instance_id": "sched-1"} | changes),
    )


def worker(
    instance_id: str, *, age_seconds: float = 0.5, queues: tuple[str, ...] = ("default",)
) -> Instance:
    return Instance(
        id=instance_id,
        host="host-w",
        pid=77,
        role=InstanceRole.WORKER,
        version="0.1.0",
        started_at=NOW - timedelta(hours=1),
        last_seen=datetime.now(UTC) - timedelta(seconds=age_seconds),
        queues=list(queues),
    )


def leader(age_seconds: float = 0.5, instance_id: str = "sched-1") -> Instance:
    return Instance(
        id=instance_id,
        host="host-a",
        pid=42,
        role=InstanceRole.LEADER,
        version="0.1.0",
        started_at=NOW - timedelta(hours=1),
        last_seen=datetime.now(UTC) - timedelta(seconds=age_seconds),
    )
