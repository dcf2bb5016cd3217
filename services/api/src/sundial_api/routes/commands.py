"""The state of a queued command."""

from __future__ import annotations

from fastapi import APIRouter

from sundial_api.commanding import command_out
from sundial_api.deps import READ_RESPONSES, READERS_ONLY, BackendDep
from sundial_api.errors import not_found
from sundial_api.schemas import ERROR_RESPONSES, CommandOut, ErrorResponse

router = APIRouter(
    prefix="/api/v1/commands",
    tags=["commands"],
    responses={**ERROR_RESPONSES, **READ_RESPONSES},
    dependencies=READERS_ONLY,
)


@router.get(
    "/{command_id}",
    summary="A command's state: pending, applied or rejected (with the reason)",
    responses={404: {"model": ErrorResponse}},
)
def get_command(command_id: str, backend: BackendDep) -> CommandOut:
    command = backend.get_command(command_id)
    if command is None:
        raise not_found("command", command_id)
    return command_out(command, backend.get_job(command.job_id))
