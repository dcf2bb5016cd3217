"""Liveness, readiness and the detailed health report."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sundial.backends import BackendError
from sundial.constants import dead_after
from sundial_api.deps import READ_RESPONSES, READERS_ONLY, BackendDep, SettingsDep
from sundial_api.errors import error_response
from sundial_api.schemas import ERROR_RESPONSES, Alive, ErrorResponse, HealthDetailed, Ready
from sundial_api.views import health_report

router = APIRouter(prefix="/health", tags=["health"], responses=ERROR_RESPONSES)


@router.get("", summary="The API process is alive")
async def alive() -> Alive:
    # async, so that it answers even while every worker thread waits on a slow backend
    return Alive()


@router.get(
    "/ready",
    summary="The backend answers",
    responses={503: {"model": ErrorResponse, "description": "backend unreachable"}},
    response_model=Ready,
)
def ready(backend: BackendDep) -> Ready | JSONResponse:
    try:
        backend.ping()
    except BackendError as error:
        return error_response(503, "backend_unavailable", f"backend unreachable: {error}")
    return Ready(backend=backend.kind)


@router.get(
    "/detailed",
    summary="Backend, scheduler instances, job counts and next runs",
    description="Always 200 when the API answers; read `status` (healthy, degraded, "
    "unhealthy) and `problems`. Unlike `/health` and `/health/ready` it needs a reader's "
    "token when the server sets SUNDIAL_API_READ_TOKEN.",
    dependencies=READERS_ONLY,
    responses=READ_RESPONSES,
)
def detailed(backend: BackendDep, settings: SettingsDep) -> HealthDetailed:
    return health_report(backend, dead_after(settings.leader_lease_seconds))
