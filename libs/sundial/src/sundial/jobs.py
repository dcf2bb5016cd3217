"""The job-authoring surface: ``@job``, ``@task``, ``cron()``, ``every()``, ``at()``.

Decorating a function marks it; a scheduler imports the modules listed in
``SUNDIAL_JOB_MODULES`` and builds its :class:`Registry` from the marked functions it
finds there. Invalid definitions fail at import time with an error that names the job.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

from sundial.constants import JOB_ID_REGEX, JOB_ID_RULE
from sundial.models import JobOptions, JobSource, JobView
from sundial.triggers import CronSpec, DateSpec, IntervalSpec, expected_interval

F = TypeVar("F", bound=Callable[..., Any])
Spec = CronSpec | IntervalSpec | DateSpec

JOB_ID_PATTERN = re.compile(JOB_ID_REGEX)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
UNIQUE_PERIODS = ("hour", "day")
# Options added since fingerprints were first stored stay out of a job's fingerprint while
# the job leaves them unset: upgrading Sundial must not count as a change to every job's
# definition, which would undo the pauses and reschedules made through the API.
_LATER_OPTIONS = ("overdue_after_seconds", "queue")


class JobDefinitionError(ValueError):
    """A job definition that cannot be scheduled; the message names the job."""


def parse_duration(value: float | int | str | timedelta | None) -> float | None:
    """Seconds from ``30``, ``"30s"``, ``"15m"``, ``"1h30m"``, ``"2d"`` or a timedelta."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = value.strip().lower().replace(" ", "")
    if not text or _DURATION.sub("", text):
        raise ValueError(f"invalid duration {value!r}; use e.g. 30s, 15m, 1h30m, 2d")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(text))


def cron(
    expression: str | None = None,
    *,
    timezone: str = "UTC",
    jitter: int | None = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    **fields: str | int,
) -> CronSpec:
    """A cron trigger from crontab text, ``cron("0 6 * * *")``, or from crontab fields by
    name, ``cron(hour=2, minute=30, day_of_week="sun")``.

    The text means what crontab(5) means. Keyword fields are crontab's fields (minute,
    hour, day, month, day_of_week) with crontab's numbering (``day_of_week=0`` is Sunday)
    and its day rule: with both ``day`` and ``day_of_week`` given, either one matching
    is enough. Fields finer than the coarsest one given start at their first value, so
    ``cron(hour=2)`` is ``0 2 * * *``.
    """
    # Unvalidated here: ``@job`` validates it, so the error can name the job.
    return CronSpec.model_construct(
        expression=expression,
        fields=fields or None,
        timezone=timezone,
        jitter=jitter,
        start_date=start_date,
        end_date=end_date,
    )


def every(
    *,
    weeks: float = 0,
    days: float = 0,
    hours: float = 0,
    minutes: float = 0,
    seconds: float = 0,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    timezone: str = "UTC",
    jitter: int | None = None,
) -> IntervalSpec:
    """An interval trigger: ``every(minutes=15)``."""
    total = timedelta(
        weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds
    ).total_seconds()
    return IntervalSpec.model_construct(
        seconds=total, start_date=start_date, end_date=end_date, timezone=timezone, jitter=jitter
    )


def at(when: datetime | str, *, timezone: str = "UTC") -> DateSpec:
    """A one-off trigger at ``when`` (an aware datetime or ISO 8601 text with offset)."""
    run_at = datetime.fromisoformat(when) if isinstance(when, str) else when
    return DateSpec.model_construct(run_at=run_at, timezone=timezone, jitter=None)


def func_ref(func: Callable[..., Any]) -> str:
    """The ``module:qualname`` text APScheduler and the catalog use to name a function."""
    return f"{func.__module__}:{func.__qualname__}"


@dataclass(frozen=True)
class JobDefinition:
    """A job defined in code: what runs, when, and with which options."""

    id: str
    name: str
    func: Callable[..., Any]
    trigger: Spec
    options: JobOptions
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def func_ref(self) -> str:
        return func_ref(self.func)

    def fingerprint(self) -> str:
        """Changes whenever the code's definition of this job changes."""
        payload = {
            "func": self.func_ref,
            "name": self.name,
            "trigger": self.trigger.model_dump(mode="json"),
            "options": self.options.model_dump(
                mode="json",
                exclude={name for name in _LATER_OPTIONS if getattr(self.options, name) is None},
            ),
            "kwargs": dict(self.kwargs),
        }
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def view(self, now: datetime | None = None) -> JobView:
        """The catalog record for this definition (state and next run filled in later)."""
        return JobView(
            id=self.id,
            name=self.name,
            func=self.func_ref,
            trigger=self.trigger,
            trigger_text=self.trigger.describe(),
            kwargs=dict(self.kwargs),
            options=self.options,
            source=JobSource.CODE,
            fingerprint=self.fingerprint(),
            expected_interval_seconds=expected_interval(self.trigger, now or datetime.now(UTC)),
        )


class Registry:
    """Jobs and callable tasks, keyed by id and by function ref.

    Each scheduler builds its own, :meth:`include`-ing its job modules: it takes the
    functions that ``@job`` and ``@task`` marked there. Tests register into one directly.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, JobDefinition] = {}
        self.functions: dict[str, Callable[..., Any]] = {}

    def include(self, module_name: str) -> None:
        """Import a module and register the jobs and tasks its functions are marked with.

        Raises ImportError for a module that cannot be imported and JobDefinitionError
        for one whose jobs cannot be scheduled (two functions claiming one id, say).
        """
        module = importlib.import_module(module_name)
        for value in list(vars(module).values()):
            for definition in getattr(value, _JOBS_MARK, ()):
                self.add(definition)
            if getattr(value, _TASK_MARK, False):
                self.functions[func_ref(value)] = value

    def add(self, definition: JobDefinition) -> None:
        """Register one job; its id must not be taken by another function."""
        taken = self.jobs.get(definition.id)
        if taken is not None and taken.func_ref != definition.func_ref:
            raise JobDefinitionError(f"job {definition.id!r}: id already used by {taken.func_ref}")
        self.jobs[definition.id] = definition
        self.functions[definition.func_ref] = definition.func

    def job(self, trigger: Spec, **options: Any) -> Callable[[F], F]:
        """Register a function as a scheduled job here (the options of :func:`job`)."""

        def decorate(func: F) -> F:
            self.add(define_job(func, trigger, **options))
            return func

        return decorate

    def task(self, func: F) -> F:
        """Register a function that the API may schedule (``POST /api/v1/jobs``)."""
        self.functions[func_ref(func)] = func
        return func


# The marks ``@job`` and ``@task`` leave on a function for Registry.from_modules to read.
_JOBS_MARK = "__sundial_jobs__"
_TASK_MARK = "__sundial_task__"


def define_job(
    func: Callable[..., Any],
    trigger: Spec,
    *,
    id: str | None = None,
    name: str | None = None,
    timeout: float | str | timedelta | None = None,
    retries: int = 0,
    retry_backoff: float | str | timedelta = 0,
    max_instances: int | None = None,
    coalesce: bool | None = None,
    misfire_grace_time: float | str | timedelta | None = None,
    critical: bool = False,
    description: str | None = None,
    tags: Iterable[str] = (),
    kwargs: Mapping[str, Any] | None = None,
    secret_kwargs: Iterable[str] = (),
    unique_per: str | None = None,
    requires: Iterable[str] = (),
    requires_within: float | str | timedelta | None = None,
    overdue_after: float | str | timedelta | None = None,
    queue: str | None = None,
) -> JobDefinition:
    """The definition of a scheduled job; JobDefinitionError names the job if invalid."""
    job_id = id or func.__name__
    try:
        return _define(
            job_id,
            func,
            trigger,
            name=name or job_id.replace("_", " ").capitalize(),
            options={
                "timeout_seconds": parse_duration(timeout),
                "retries": retries,
                "retry_backoff_seconds": parse_duration(retry_backoff),
                "max_instances": max_instances,
                "coalesce": coalesce,
                "misfire_grace_time": _whole_seconds(parse_duration(misfire_grace_time)),
                "critical": critical,
                "description": description or inspect.getdoc(func) or "",
                "tags": tuple(tags),
                "secret_kwargs": tuple(secret_kwargs),
                "unique_per": unique_per,
                "requires": tuple(requires),
                "requires_within_seconds": parse_duration(requires_within),
                "overdue_after_seconds": parse_duration(overdue_after),
                "queue": queue,
            },
            kwargs=dict(kwargs or {}),
        )
    except (ValueError, TypeError, ValidationError) as error:
        raise JobDefinitionError(f"job {job_id!r}: {_reason(error)}") from None


def job(trigger: Spec, **options: Any) -> Callable[[F], F]:
    """Make a function a scheduled job.

    Options: ``id`` (default: the function's name), ``name``, ``timeout``, ``retries``,
    ``retry_backoff``, ``max_instances``, ``coalesce``, ``misfire_grace_time``,
    ``critical``, ``description`` (default: the docstring), ``tags``, ``kwargs``,
    ``secret_kwargs``, ``unique_per`` (``"hour"`` or ``"day"``), ``requires``,
    ``requires_within``, ``overdue_after`` (default: three intervals, within 3 minutes
    and an hour) and ``queue`` (the workers' queue its runs go to; default ``default``);
    durations as seconds, text (``"15m"``) or timedelta. The
    definition is checked here, so a module with an invalid job fails to import with an
    error that names it; the scheduler schedules it once it imports the module (it is
    listed in ``SUNDIAL_JOB_MODULES``). Several ``@job`` on one function give it several
    schedules, each with its own id.
    """

    def decorate(func: F) -> F:
        definition = define_job(func, trigger, **options)
        setattr(func, _JOBS_MARK, (*getattr(func, _JOBS_MARK, ()), definition))
        return func

    return decorate


def task(func: F) -> F:
    """Make a function one that the API may schedule (``POST /api/v1/jobs``)."""
    setattr(func, _TASK_MARK, True)
    return func


def _define(
    job_id: str,
    func: Callable[..., Any],
    trigger: Spec,
    *,
    name: str,
    options: dict[str, Any],
    kwargs: dict[str, Any],
) -> JobDefinition:
    if not JOB_ID_PATTERN.match(job_id):
        raise ValueError(f"ids are {JOB_ID_RULE}")
    if not isinstance(trigger, CronSpec | IntervalSpec | DateSpec):
        raise TypeError("trigger must come from cron(), every() or at()")
    trigger = type(trigger).model_validate(dict(trigger))
    if "<locals>" in func.__qualname__ or "<lambda>" in func.__qualname__:
        raise ValueError("job functions must be module-level so the scheduler can import them")
    if options["unique_per"] not in (None, *UNIQUE_PERIODS):
        raise ValueError(f"unique_per must be one of {UNIQUE_PERIODS}")
    inspect.signature(func).bind(**kwargs)
    return JobDefinition(
        id=job_id,
        name=name,
        func=func,
        trigger=trigger,
        options=JobOptions(**options),
        kwargs=kwargs,
    )


def _whole_seconds(value: float | None) -> int | None:
    return None if value is None else max(1, round(value))


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return str(error)
