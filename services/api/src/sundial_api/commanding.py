"""Write side: every change is a queued command that the scheduler leader applies.

The API validates what it can without importing job code (trigger, shape, options,
existence of the job); the leader checks the rest (is the function registered, do the
kwargs fit its signature) and finishes the command ``applied`` or ``rejected`` + reason.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from sundial.backends import Backend
from sundial.constants import MAX_COMMAND_WAIT_SECONDS, SECRET_MASK
from sundial.models import (
    AddJob,
    Command,
    CommandKind,
    CommandState,
    JobOptions,
    JobView,
    ModifyJob,
    Reschedule,
)
from sundial.triggers import CronSpec, DateSpec, IntervalSpec
from sundial_api.errors import ApiError, describe_validation, not_found
from sundial_api.schemas import CommandAccepted, CommandOut

#: how often a waiting request re-reads its command
WAIT_POLL_SECONDS = 0.1
FUNC_REF_HINT = "'package.module:function' (a function registered with @task or @job)"


def command_url(command_id: str) -> str:
    return f"/api/v1/commands/{command_id}"


def accepted(command: Command) -> CommandAccepted:
    return CommandAccepted(
        command_id=command.id,
        kind=command.kind,
        job_id=command.job_id,
        state=command.state,
        reason=command.reason,
        url=command_url(command.id),
    )


def _masked_kwargs(kwargs: Any, secret: Collection[str]) -> Any:
    if not isinstance(kwargs, dict):
        return kwargs
    return {key: SECRET_MASK if key in secret else value for key, value in kwargs.items()}


def command_out(command: Command, job: JobView | None) -> CommandOut:
    """The command as shown to clients: kwargs named secret by the job or payload masked."""
    payload = dict(command.payload)
    options = payload.get("options") if isinstance(payload.get("options"), dict) else {}
    secret = set(job.options.secret_kwargs if job else ())
    secret.update((options or {}).get("secret_kwargs") or ())
    if "kwargs" in payload:
        payload["kwargs"] = _masked_kwargs(payload["kwargs"], secret)
    return CommandOut(
        id=command.id,
        kind=command.kind,
        job_id=command.job_id,
        state=command.state,
        reason=command.reason,
        payload=payload,
        created_at=command.created_at,
        finished_at=command.finished_at,
    )


def check_trigger(trigger: CronSpec | IntervalSpec | DateSpec | None) -> None:
    """Refuse triggers the scheduler could not build or that would never fire."""
    if trigger is None:
        return
    now = datetime.now(UTC)
    if isinstance(trigger, DateSpec) and trigger.run_at <= now:
        raise ApiError(
            422,
            "validation_error",
            f"trigger.run_at: {trigger.run_at.isoformat()} is in the past; "
            "a one-off job needs a future time",
        )
    try:
        first = trigger.build().get_next_fire_time(None, now)
    except (ValueError, OverflowError) as error:
        raise ApiError(
            422, "validation_error", f"trigger.{trigger.type}: cannot schedule it: {error}"
        ) from None
    if first is None:
        raise ApiError(
            422,
            "validation_error",
            f"trigger.{trigger.type}: it would never fire after now (check start_date and "
            "end_date)",
        )


def check_json(value: Any, where: str = "body") -> None:
    """Refuse what JSON parsers accept but JSON storage (Postgres, Redis) does not:
    NaN, Infinity, NUL characters and unpaired surrogates."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ApiError(
            422, "validation_error", f"{where}: {value} is not a JSON number; use a finite value"
        )
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{key}" if where != "body" else str(key)
            _check_text(str(key), f"{where}: a key")
            check_json(item, inner)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(item, f"{where}[{index}]")


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise ApiError(422, "validation_error", f"{where}: text must not contain NUL (\\u0000)")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ApiError(
            422, "validation_error", f"{where}: text is not valid Unicode (unpaired surrogate)"
        ) from None


def check_func_ref(func: str) -> None:
    module, sep, name = func.partition(":")
    if not sep or not module.strip() or not name.strip() or " " in func:
        raise ApiError(422, "validation_error", f"func: {func!r} is not {FUNC_REF_HINT}")


def add_command(job_id: str, job: AddJob) -> Command:
    check_json(job.model_dump())
    check_func_ref(job.func)
    check_trigger(job.trigger)
    return Command(kind=CommandKind.ADD, job_id=job_id, payload=job.model_dump(mode="json"))


def change_command(job: JobView, change: ModifyJob) -> Command:
    """A trigger alone reschedules; anything else modifies (only the fields given)."""
    given = {name for name in change.model_fields_set if getattr(change, name) is not None}
    if not given:
        raise ApiError(
            422,
            "validation_error",
            "nothing to change: give at least one of name, trigger, kwargs, options",
        )
    check_json(change.model_dump())
    check_trigger(change.trigger)
    if given == {"trigger"} and change.trigger is not None:
        payload = Reschedule(trigger=change.trigger).model_dump(mode="json")
        return Command(kind=CommandKind.RESCHEDULE, job_id=job.id, payload=payload)
    if change.options is not None:
        try:
            JobOptions.model_validate(job.options.model_dump() | change.options)
        except ValidationError as error:
            message, _ = describe_validation(
                [{**e, "loc": ("options", *e["loc"])} for e in error.errors()]
            )
            raise ApiError(422, "validation_error", message) from None
    return Command(kind=CommandKind.MODIFY, job_id=job.id, payload=change.model_dump(mode="json"))


def require_job(backend: Backend, job_id: str) -> JobView:
    """The job with this id, or a 404 that names it (blocking)."""
    job = backend.get_job(job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


async def submit(backend: Backend, command: Command, wait: float) -> Command:
    """Enqueue ``command``; then, for up to ``wait`` seconds, wait for it to finish.

    Async so that a waiting request holds a worker thread only while it reads the backend,
    not for the whole wait: many waiting clients must not starve the other routes.
    """
    await run_in_threadpool(backend.enqueue_command, command)
    deadline = time.monotonic() + min(wait, MAX_COMMAND_WAIT_SECONDS)
    current = command
    while current.state is CommandState.PENDING:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(WAIT_POLL_SECONDS, remaining))
        found = await run_in_threadpool(backend.get_command, command.id)
        current = found or current
    return current
