"""The job catalog (reads) and job changes (queued commands)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from sundial.backends import Backend
from sundial.models import AddJob, Command, CommandKind, CommandState, JobState, ModifyJob
from sundial_api.commanding import (
    accepted,
    add_command,
    change_command,
    command_url,
    require_job,
    submit,
)
from sundial_api.cursors import decode_job_cursor, decode_run_cursor
from sundial_api.deps import (
    READ_RESPONSES,
    READERS_ONLY,
    BackendDep,
    JobCursor,
    Limit,
    OutcomeFilter,
    RequireToken,
    RunCursorQuery,
    Since,
    Wait,
)
from sundial_api.errors import ApiError
from sundial_api.schemas import (
    ERROR_RESPONSES,
    CommandAccepted,
    CreateJob,
    ErrorResponse,
    JobDetail,
    JobPage,
    RunPage,
)
from sundial_api.views import job_detail, job_page, run_page, since_utc

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

COMMAND_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"model": CommandAccepted, "description": "the command finished within ?wait="},
    401: {"model": ErrorResponse, "description": "missing or wrong bearer token"},
    403: {"model": ErrorResponse, "description": "no SUNDIAL_API_TOKEN configured"},
    404: {"model": ErrorResponse, "description": "no such job"},
    413: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
}
COMMAND_DOC = (
    "Queues a command for the scheduler leader and answers 202 with its id while it is "
    "pending. With `?wait=N` the request waits up to N seconds: 200 if the command was "
    "applied or rejected by then (see `state` and `reason`), else 202."
)
#: changes that need nothing but the job's id: (method, path, kind, summary)
JOB_COMMANDS = (
    ("POST", "/{job_id}/pause", CommandKind.PAUSE, "Pause a job"),
    ("POST", "/{job_id}/resume", CommandKind.RESUME, "Resume a paused job"),
    (
        "POST",
        "/{job_id}/run",
        CommandKind.RUN,
        "Run a job now, once; its regular schedule is left alone",
    ),
    ("DELETE", "/{job_id}", CommandKind.REMOVE, "Remove a job"),
)


async def _respond(
    backend: Backend, command: Command, wait: float, response: Response
) -> CommandAccepted:
    finished = await submit(backend, command, wait)
    response.status_code = 202 if finished.state is CommandState.PENDING else 200
    response.headers["Location"] = command_url(command.id)
    return accepted(finished)


@router.get(
    "",
    summary="Jobs in the catalog, by id",
    responses={400: {"model": ErrorResponse}, **READ_RESPONSES},
    dependencies=READERS_ONLY,
)
def list_jobs(
    backend: BackendDep,
    state: Annotated[JobState | None, Query()] = None,
    tag: Annotated[str | None, Query(description="only jobs with this tag")] = None,
    limit: Limit = 100,
    cursor: JobCursor = None,
) -> JobPage:
    after = decode_job_cursor(cursor) if cursor else None
    return job_page(backend, state=state, tag=tag, after=after, limit=limit)


@router.get(
    "/{job_id}",
    summary="One job: trigger, next run, last run and recent statistics",
    responses={404: {"model": ErrorResponse}, **READ_RESPONSES},
    dependencies=READERS_ONLY,
)
def get_job(job_id: str, backend: BackendDep) -> JobDetail:
    return job_detail(backend, require_job(backend, job_id))


@router.get(
    "/{job_id}/runs",
    summary="A job's runs, newest first",
    responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, **READ_RESPONSES},
    dependencies=READERS_ONLY,
)
def list_job_runs(
    job_id: str,
    backend: BackendDep,
    outcome: OutcomeFilter = None,
    since: Since = None,
    limit: Limit = 100,
    cursor: RunCursorQuery = None,
) -> RunPage:
    before = decode_run_cursor(cursor) if cursor else None
    require_job(backend, job_id)
    start = since_utc(since)
    return run_page(
        backend, job_id=job_id, outcome=outcome, since=start, before=before, limit=limit
    )


# The change routes stay async because ?wait= polls without holding a worker thread, so
# their blocking reads go to the thread pool by hand.
@router.post(
    "",
    status_code=202,
    summary="Schedule a registered function as a new job",
    description=COMMAND_DOC + " The scheduler rejects functions it has not registered.",
    responses={**COMMAND_RESPONSES, 409: {"model": ErrorResponse, "description": "id in use"}},
)
async def create_job(
    body: CreateJob, backend: BackendDep, _auth: RequireToken, response: Response, wait: Wait = 0
) -> CommandAccepted:
    if await run_in_threadpool(backend.get_job, body.id) is not None:
        raise ApiError(
            409, "conflict", f"a job with id {body.id!r} already exists; pick another id"
        )
    spec = AddJob.model_validate(body.model_dump(exclude={"id"}))
    return await _respond(backend, add_command(body.id, spec), wait, response)


@router.patch(
    "/{job_id}",
    status_code=202,
    summary="Change a job's trigger (reschedule) or its name, kwargs and options",
    description=COMMAND_DOC + " A body with only `trigger` queues a `reschedule` command; "
    "anything else a `modify` command that changes only the fields given.",
    responses=COMMAND_RESPONSES,
)
async def change_job(
    job_id: str,
    body: ModifyJob,
    backend: BackendDep,
    _auth: RequireToken,
    response: Response,
    wait: Wait = 0,
) -> CommandAccepted:
    job = await run_in_threadpool(require_job, backend, job_id)
    return await _respond(backend, change_command(job, body), wait, response)


def _add_job_command(method: str, path: str, kind: CommandKind, summary: str) -> None:
    """Register the route that queues a ``kind`` command for the job named in the path."""

    async def queue_command(
        job_id: str, backend: BackendDep, _auth: RequireToken, response: Response, wait: Wait = 0
    ) -> CommandAccepted:
        await run_in_threadpool(require_job, backend, job_id)
        return await _respond(backend, Command(kind=kind, job_id=job_id), wait, response)

    router.add_api_route(
        path,
        queue_command,
        methods=[method],
        # the name makes the OpenAPI operation id: pause_job, resume_job, run_job, remove_job
        name=f"{kind.value}_job",
        status_code=202,
        summary=summary,
        description=COMMAND_DOC,
        responses=COMMAND_RESPONSES,
    )


for job_command in JOB_COMMANDS:
    _add_job_command(*job_command)
