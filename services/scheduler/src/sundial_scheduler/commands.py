"""Applies queued commands (pause, resume, run, reschedule, modify, add, remove).

Each command ends ``applied`` or ``rejected`` with a reason a person can act on. Commands
run on the leader's command thread (:class:`CommandLoop`), next to APScheduler's own
lock, against the leader's jobs as :class:`JobControl` offers them.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog
from pydantic import ValidationError

from sundial.backends import Backend, BackendError
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
from sundial_scheduler.engine import GuardedScheduler, engine_options

log = structlog.get_logger("sundial.commands")

#: commands read per round trip
COMMAND_BATCH = 100
#: longest wait for a wake-up before looking for commands again
COMMAND_WAIT_SECONDS = 1.0


class JobControl(Protocol):
    """What applying commands needs of the leader: its engine, its jobs, its functions."""

    @property
    def engine(self) -> GuardedScheduler: ...

    @property
    def functions(self) -> Mapping[str, Callable[..., Any]]:
        """Registered functions by ``module:qualname``."""

    def view(self, job_id: str) -> JobView | None: ...

    def replace_view(self, view: JobView) -> None:
        """Store a changed catalog entry."""

    def add_job(self, view: JobView, func: Callable[..., Any]) -> None:
        """Schedule ``func`` as the job ``view`` describes."""

    def run_now(self, job_id: str) -> str:
        """Start a one-off run outside the schedule; returns its fire time."""


class Rejected(Exception):
    """A command that cannot be applied; the message is the reason recorded."""


class CommandApplier:
    def __init__(self, jobs: JobControl) -> None:
        self._jobs = jobs
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
        view = self._jobs.view(command.job_id)
        if view is None:
            raise Rejected(f"unknown job {command.job_id!r}")
        return view

    def _pause(self, command: Command) -> None:
        self._known(command)
        self._jobs.engine.pause_job(command.job_id)
        self._jobs.replace_view(self._known(command))

    def _resume(self, command: Command) -> None:
        self._known(command)
        self._jobs.engine.resume_job(command.job_id)
        self._jobs.replace_view(self._known(command))

    def _run(self, command: Command) -> str:
        self._known(command)
        run_id_hint = self._jobs.run_now(command.job_id)
        return f"started a one-off run at {run_id_hint}; the schedule is unchanged"

    def _reschedule(self, command: Command) -> None:
        view = self._known(command)
        spec = Reschedule.model_validate(command.payload).trigger
        if view.state is JobState.PAUSED:
            # reschedule_job would compute a next run time and so resume the job.
            self._jobs.engine.modify_job(command.job_id, trigger=spec.build())
        else:
            self._jobs.engine.reschedule_job(command.job_id, trigger=spec.build())
        view = self._known(command)  # with the next run time the engine just computed
        self._jobs.replace_view(
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
            self._check_kwargs(self._jobs.engine.get_job(command.job_id).func, change.kwargs)
        engine_changes: dict[str, Any] = engine_options(options)
        if change.name is not None:
            engine_changes["name"] = change.name
        if change.kwargs is not None:
            engine_changes["kwargs"] = change.kwargs
        self._jobs.engine.modify_job(command.job_id, **engine_changes)
        updated = self._known(command).model_copy(
            update={
                "name": change.name or view.name,
                "options": options,
                "kwargs": change.kwargs if change.kwargs is not None else view.kwargs,
            }
        )
        self._jobs.replace_view(updated)
        if change.trigger is not None:
            self._reschedule(
                command.model_copy(update={"payload": {"trigger": change.trigger.model_dump()}})
            )

    def _add(self, command: Command) -> None:
        if not JOB_ID_PATTERN.match(command.job_id):
            raise Rejected(f"invalid job id {command.job_id!r}")
        if self._jobs.view(command.job_id) is not None:
            raise Rejected(f"job {command.job_id!r} already exists")
        spec = AddJob.model_validate(command.payload)
        func = self._jobs.functions.get(spec.func)
        if func is None:
            known = ", ".join(sorted(self._jobs.functions)) or "none"
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
        self._jobs.add_job(view, func)

    def _remove(self, command: Command) -> str | None:
        view = self._known(command)
        self._jobs.engine.remove_job(command.job_id)
        if view.source is JobSource.CODE:
            return "removed; this job is defined in code and returns at the next restart"
        return None

    @staticmethod
    def _check_kwargs(func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        try:
            inspect.signature(func).bind(**kwargs)
        except TypeError as error:
            raise Rejected(f"kwargs do not match {func.__qualname__}(): {error}") from None


class CommandLoop:
    """The leader's command thread: applies pending commands until told to stop.

    It stops applying as soon as this instance cannot prove it leads, so that a command
    is never applied by a leader whose term is over.
    """

    def __init__(
        self,
        backend: Backend,
        applier: CommandApplier,
        *,
        may_run: Callable[[], bool],
        on_error: Callable[[str], None],
    ) -> None:
        self._backend = backend
        self._applier = applier
        self._may_run = may_run
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sundial-commands")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for command in self._backend.pending_commands(COMMAND_BATCH):
                    if self._stop.is_set() or not self._may_run():
                        return
                    self._finish(command)
                self._backend.wait_for_commands(COMMAND_WAIT_SECONDS)
            except BackendError as error:
                self._on_error("commands")
                log.warning("commands.backend_unreachable", error=str(error))
                self._stop.wait(COMMAND_WAIT_SECONDS)

    def _finish(self, command: Command) -> None:
        state, reason = self._applier.apply(command)
        self._backend.finish_command(command.id, state, reason)
        log.info(
            "command.finished",
            command_id=command.id,
            kind=command.kind.value,
            job_id=command.job_id,
            state=state.value,
            reason=reason,
        )
