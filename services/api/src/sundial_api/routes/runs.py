"""Run history across jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from sundial_api.cursors import decode_run_cursor
from sundial_api.deps import (
    READ_RESPONSES,
    READERS_ONLY,
    BackendDep,
    Limit,
    OutcomeFilter,
    RunCursorQuery,
    Since,
)
from sundial_api.errors import not_found
from sundial_api.schemas import ERROR_RESPONSES, ErrorResponse, RunOut, RunPage
from sundial_api.views import run_out, run_page, since_utc

router = APIRouter(
    prefix="/api/v1/runs",
    tags=["runs"],
    responses={**ERROR_RESPONSES, **READ_RESPONSES},
    dependencies=READERS_ONLY,
)


@router.get("", summary="Runs, newest first", responses={400: {"model": ErrorResponse}})
def list_runs(
    backend: BackendDep,
    job_id: Annotated[str | None, Query(description="only this job's runs")] = None,
    outcome: OutcomeFilter = None,
    since: Since = None,
    limit: Limit = 100,
    cursor: RunCursorQuery = None,
) -> RunPage:
    return run_page(
        backend,
        job_id=job_id,
        outcome=outcome,
        since=since_utc(since),
        before=decode_run_cursor(cursor) if cursor else None,
        limit=limit,
    )


@router.get("/{run_id}", summary="One run", responses={404: {"model": ErrorResponse}})
def get_run(run_id: str, backend: BackendDep) -> RunOut:
    run = backend.get_run(run_id)
    if run is None:
        raise not_found("run", run_id)
    return run_out(run)
