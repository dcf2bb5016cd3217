"""Scheduler instances, the leader and heartbeat ages."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from sundial.constants import dead_after
from sundial_api.deps import READ_RESPONSES, READERS_ONLY, BackendDep, SettingsDep
from sundial_api.schemas import ERROR_RESPONSES, SchedulerStatus
from sundial_api.views import scheduler_status

router = APIRouter(
    prefix="/api/v1/scheduler",
    tags=["scheduler"],
    responses={**ERROR_RESPONSES, **READ_RESPONSES},
    dependencies=READERS_ONLY,
)


@router.get("", summary="Scheduler instances, the live leader and heartbeat ages")
def get_scheduler(backend: BackendDep, settings: SettingsDep) -> SchedulerStatus:
    instances = backend.list_instances()
    return scheduler_status(instances, datetime.now(UTC), dead_after(settings.leader_lease_seconds))
