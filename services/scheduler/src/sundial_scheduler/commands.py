"""Applies queued commands (pause, resume, run, reschedule, modify, add, remove).

Each command ends ``applied`` or ``rejected`` with a reason a person can act on. Commands
run on the leader's command thread, next to APScheduler's own lock.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from sundial.jobs import JOB_ID_PATTERN
from sundial.models import (
    AddJob,
    Command,
    CommandKind,
    CommandState,
    JobOptions,
    JobSource,
    JobState,
    JobView,
    ModifyJob,
    Reschedule,
    utcnow,
)
from sundial.triggers import expected_interval

if TYPE_CHECKING:
    from sundial_scheduler.service import SundialScheduler


class Rejected(Exception):
    """A command that cannot be applied; the message is the reason recorded."""


class CommandApplier:
    def __init__(self, service: SundialScheduler) -> None:
        self._service = service
        self._handlers: dict[CommandKind, Callable[[Command], str | None]] = {
            CommandKind.PAUSE: self._pause,
            CommandKind.RESUME: self._resume,
            CommandKind.RUN: self._run,
            CommandKind.RESCHEDULE: self._reschedule,
            CommandKind.MODIFY: self._modify,
            CommandKind.ADD: self._add,
            CommandKind.REMOVE: self._remove,
        }

    def apply(self, command: Command) -> tuple[CommandState, str | None]:
        """Apply one command; returns its final state and the reason or note."""
        try:
            note = self._handlers[command.kind](command)
        except Rejected as error:
            return CommandState.REJECTED, str(error)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return CommandState.REJECTED, f"{where}: {first['msg']}"
        except (ValueError, TypeError) as error:
            return CommandState.REJECTED, str(error)
        return CommandState.APPLIED, note

    def _known(self, command: Command) -> JobView:
        view = self._service.view(command.job_id)
        if view is None:
            raise Rejected(f"unknown job {command.job_id!r}")
        return view

    def _pause(self, command: Command) -> None:
        self._known(command)
        self._service.engine.pause_job(command.job_id)
        self._service.touch(command.job_id)

    def _resume(self, command: Command) -> None:
        self._known(command)
        self._service.engine.resume_job(command.job_id)
        self._service.touch(command.job_id)

    def _run(self, command: Command) -> str:
        self._known(command)
        run_id_hint = self._service.run_now(command.job_id)
        return f"started a one-off run at {run_id_hint}; the schedule is unchanged"

    def _reschedule(self, command: Command) -> None:
        view = self._known(command)
        spec = Reschedule.model_validate(command.payload).trigger
        if view.state is JobState.PAUSED:
            # reschedule_job would compute a next run time and so resume the job.
            self._service.engine.modify_job(command.job_id, trigger=spec.build())
        else:
            self._service.engine.reschedule_job(command.job_id, trigger=spec.build())
        view = self._known(command)  # with the next run time the engine just computed
        self._service.replace_view(
            view.model_copy(
                update={
                    "trigger": spec,
                    "trigger_text": spec.describe(),
                    "expected_interval_seconds": expected_interval(spec, utcnow()),
                }
            )
        )

    def _modify(self, command: Command) -> None:
        view = self._known(command)
        change = ModifyJob.model_validate(command.payload)
        options = view.options
        if change.options:
            options = JobOptions.model_validate(options.model_dump() | change.options)
        if change.kwargs is not None:
            self._check_kwargs(self._service.engine.get_job(command.job_id).func, change.kwargs)
        engine_changes: dict[str, Any] = engine_options(options)
        if change.name is not None:
            engine_changes["name"] = change.name
        if change.kwargs is not None:
            engine_changes["kwargs"] = change.kwargs
        self._service.engine.modify_job(command.job_id, **engine_changes)
        updated = self._known(command).model_copy(
            update={
                "name": change.name or view.name,
                "options": options,
                "kwargs": change.kwargs if change.kwargs is not None else view.kwargs,
            }
        )
        self._service.replace_view(updated)
        if change.trigger is not None:
            self._reschedule(
                command.model_copy(update={"payload": {"trigger": change.trigger.model_dump()}})
            )

    def _add(self, command: Command) -> None:
        if not JOB_ID_PATTERN.match(command.job_id):
            raise Rejected(f"invalid job id {command.job_id!r}")
        if self._service.view(command.job_id) is not None:
            raise Rejected(f"job {command.job_id!r} already exists")
        spec = AddJob.model_validate(command.payload)
        func = self._service.registry.functions.get(spec.func)
        if func is None:
            known = ", ".join(sorted(self._service.registry.functions)) or "none"
            raise Rejected(f"unknown function {spec.func!r}; registered functions: {known}")
        self._check_kwargs(func, spec.kwargs)
        view = JobView(
            id=command.job_id,
            name=spec.name or command.job_id,
            func=spec.func,
            trigger=spec.trigger,
            trigger_text=spec.trigger.describe(),
            kwargs=spec.kwargs,
            options=spec.options,
            source=JobSource.API,
            expected_interval_seconds=expected_interval(spec.trigger, utcnow()),
        )
        self._service.add_job(view, func)

    def _remove(self, command: Command) -> str | None:
        view = self._known(command)
        self._service.engine.remove_job(command.job_id)
        if view.source is JobSource.CODE:
            return "removed; this job is defined in code and returns at the next restart"
        return None

    @staticmethod
    def _check_kwargs(func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        try:
            inspect.signature(func).bind(**kwargs)
        except TypeError as error:
            raise Rejected(f"kwargs do not match {func.__qualname__}(): {error}") from None


def engine_options(options: JobOptions) -> dict[str, Any]:
    """The JobOptions that APScheduler itself enforces, where set."""
    fields = ("max_instances", "coalesce", "misfire_grace_time")
    return {name: getattr(options, name) for name in fields if getattr(options, name) is not None}
