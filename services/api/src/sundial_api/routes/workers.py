"""Worker instances: heartbeat, queues and the runs each executes now."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from sundial.constants import dead_after
from sundial_api.deps import BackendDep, SettingsDep
from sundial_api.schemas import ERROR_RESPONSES, WorkerList
from sundial_api.views import running_runs, worker_list

router = APIRouter(prefix="/api/v1/workers", tags=["workers"], responses=ERROR_RESPONSES)


@router.get("", summary="Workers, alive or dead, with their queues and running runs")
def list_workers(backend: BackendDep, settings: SettingsDep) -> WorkerList:
    instances = backend.list_instances()
    running = running_runs(backend)
    return worker_list(
        instances, running, datetime.now(UTC), dead_after(settings.leader_lease_seconds)
    )
