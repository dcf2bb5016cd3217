"""The built-in ``system_maintenance`` job: prunes run history and old commands."""

from __future__ import annotations

from datetime import timedelta

import structlog

from sundial.constants import MAINTENANCE_INTERVAL_HOURS, MAINTENANCE_JOB_ID
from sundial.context import current_run
from sundial.jobs import Registry, define_job, every

log = structlog.get_logger("sundial.maintenance")


def system_maintenance(retention_days: int) -> None:
    """Delete runs, claims and finished commands older than the retention period."""
    run = current_run()
    cutoff = run.scheduled_time - timedelta(days=retention_days)
    pruned = run.backend.prune(cutoff)
    log.info("maintenance.pruned", runs=pruned, older_than=cutoff.isoformat())


def with_maintenance(registry: Registry, retention_days: int) -> Registry:
    """A copy of ``registry`` with the maintenance job added (the original is left alone)."""
    combined = Registry()
    combined.jobs.update(registry.jobs)
    combined.functions.update(registry.functions)
    combined.add(
        define_job(
            system_maintenance,
            every(hours=MAINTENANCE_INTERVAL_HOURS),
            id=MAINTENANCE_JOB_ID,
            name="System maintenance",
            timeout="30m",
            max_instances=1,
            coalesce=True,
            tags=("system",),
            kwargs={"retention_days": retention_days},
        )
    )
    return combined
