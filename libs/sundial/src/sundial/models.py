"""Plain typed records shared by the scheduler, the API and every backend."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sundial.constants import (
    DEFAULT_QUEUE,
    JOB_ID_REGEX,
    JOB_ID_RULE,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_TRACEBACK_CHARS,
    MIN_REQUIRES_WITHIN_SECONDS,
    SECRET_MASK,
    default_overdue_after,
)
from sundial.triggers import TriggerSpec


def utcnow() -> datetime:
    return datetime.now(UTC)


# The version and variant bits of a version-4 (random) UUID, as ``uuid.UUID`` sets them.
_UUID_VERSION_VARIANT_MASK = 0xF000 << 64 | 0xC000 << 48
_UUID_VERSION_4_VARIANT_RFC = 0x4000 << 64 | 0x8000 << 48


def new_id() -> str:
    """A random version-4 UUID as 32 hex digits.

    Drawn from the process's seeded generator rather than ``uuid4()``: a scheduler makes
    a thousand of these a second, and ``uuid4()`` costs an ``os.urandom`` system call
    each. Ids only need to be unique, not unguessable.
    """
    bits = random.getrandbits(128) & ~_UUID_VERSION_VARIANT_MASK | _UUID_VERSION_4_VARIANT_RFC
    return f"{bits:032x}"


class Outcome(StrEnum):
    """How a run ended; ``queued`` (waiting for a worker) and ``running`` while it has not."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    MISSED = "missed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"


#: outcomes of a run that has ended; a run in any other is still under way
FINAL_OUTCOMES = tuple(o for o in Outcome if o not in (Outcome.QUEUED, Outcome.RUNNING))


class JobState(StrEnum):
    SCHEDULED = "scheduled"
    PAUSED = "paused"


class JobSource(StrEnum):
    CODE = "code"
    API = "api"


class JobOptions(BaseModel):
    """Sundial's per-job options beyond the trigger."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_instances: int | None = Field(default=None, ge=1, le=1000)
    coalesce: bool | None = None
    misfire_grace_time: int | None = Field(default=None, ge=1)
    timeout_seconds: float | None = Field(default=None, gt=0)
    retries: int = Field(default=0, ge=0, le=100)
    retry_backoff_seconds: float = Field(default=0, ge=0)
    critical: bool = False
    description: str = ""
    tags: tuple[str, ...] = ()
    secret_kwargs: tuple[str, ...] = ()
    unique_per: str | None = Field(
        default=None, description="skip a run when one already succeeded this 'day' or 'hour'"
    )
    requires: tuple[str, ...] = Field(
        default=(), description="job ids that must have succeeded within `requires_within`"
    )
    requires_within_seconds: float | None = Field(default=None, ge=MIN_REQUIRES_WITHIN_SECONDS)
    queue: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="workers' queue for this job's runs (queue executor); unset = default",
    )
    overdue_after_seconds: float | None = Field(
        default=None,
        gt=0,
        description="how long past its next run time the job may go without running "
        "before it counts as overdue; unset = derived from its interval",
    )

    @field_validator("requires")
    @classmethod
    def _job_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for job_id in value:
            if not re.match(JOB_ID_REGEX, job_id):
                raise ValueError(f"{job_id!r} is not a job id: {JOB_ID_RULE}")
        return value

    @model_validator(mode="after")
    def _requires_a_window(self) -> JobOptions:
        if self.requires and self.requires_within_seconds is None:
            raise ValueError("requires needs requires_within (e.g. '1d'): since when to look")
        return self

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): backoff, doubling."""
        return float(self.retry_backoff_seconds * 2 ** (attempt - 1))

    @property
    def queue_name(self) -> str:
        return self.queue or DEFAULT_QUEUE


class JobView(BaseModel):
    """A job as the catalog shows it: JSON, readable without importing job code."""

    id: str
    name: str
    func: str
    trigger: TriggerSpec
    trigger_text: str
    state: JobState = JobState.SCHEDULED
    next_run_time: datetime | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    options: JobOptions = JobOptions()
    source: JobSource = JobSource.CODE
    fingerprint: str = ""
    expected_interval_seconds: float | None = None
    updated_at: datetime = Field(default_factory=utcnow)

    def overdue_after_seconds(self) -> float:
        """Seconds past its next run time before this job counts as overdue."""
        if self.options.overdue_after_seconds is not None:
            return self.options.overdue_after_seconds
        return default_overdue_after(self.expected_interval_seconds)

    def public_kwargs(self) -> dict[str, Any]:
        """kwargs with the values of secret keys masked."""
        return {
            key: SECRET_MASK if key in self.options.secret_kwargs else value
            for key, value in self.kwargs.items()
        }


class Run(BaseModel):
    """One execution attempt (or a fire time that was missed or skipped)."""

    run_id: str = Field(default_factory=new_id)
    job_id: str
    scheduled_time: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    outcome: Outcome = Outcome.RUNNING
    attempt: int = 1
    manual: bool = False
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    instance_id: str = ""
    #: the workers' queue of a queued run (None for runs executed by the scheduler itself)
    queue: str | None = None
    #: when a queued run may start (a retry waits out its backoff); None: at its fire time
    due_at: datetime | None = None
    #: how long this async run held the event loop without yielding (blocks past the
    #: process's threshold only); 0 for a run that never did
    event_loop_blocked_seconds: float = 0.0

    def finish(
        self,
        outcome: Outcome,
        *,
        error: BaseException | None = None,
        tb: str | None = None,
        blocked: float = 0.0,
    ) -> Run:
        """A copy of this run, finished now with ``outcome`` (``blocked``: loop time held)."""
        finished = utcnow()
        started = self.started_at or finished
        return self.model_copy(
            update={
                "outcome": outcome,
                "finished_at": finished,
                "started_at": started,
                "duration_seconds": (finished - started).total_seconds(),
                "error_type": type(error).__name__ if error is not None else self.error_type,
                "error_message": truncate(str(error), MAX_ERROR_MESSAGE_CHARS)
                if error is not None
                else self.error_message,
                "traceback": truncate(tb, MAX_TRACEBACK_CHARS) if tb else self.traceback,
                "event_loop_blocked_seconds": self.event_loop_blocked_seconds + blocked,
            }
        )


@dataclass(frozen=True)
class QueueDepth:
    """The runs waiting in one workers' queue."""

    runs: int
    #: when the run waiting longest became due (its fire time, or its retry's due time)
    oldest_due: datetime


class RunSummary(BaseModel):
    """Per-job digest of run history, kept by the backend as runs are saved."""

    job_id: str
    last_run_at: datetime | None = None
    last_outcome: Outcome | None = None
    last_duration_seconds: float | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    consecutive_failures: int = 0


class CommandKind(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    RUN = "run"
    RESCHEDULE = "reschedule"
    MODIFY = "modify"
    ADD = "add"
    REMOVE = "remove"


class CommandState(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"


class Command(BaseModel):
    """A change requested through the API, applied (or rejected) by the leader."""

    id: str = Field(default_factory=new_id)
    kind: CommandKind
    job_id: str
    payload: dict[str, Any] = Field(default_factory=dict)
    state: CommandState = CommandState.PENDING
    reason: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class InstanceRole(StrEnum):
    LEADER = "leader"
    STANDBY = "standby"
    STOPPING = "stopping"
    WORKER = "worker"


class Instance(BaseModel):
    """A scheduler or worker process, as its heartbeat describes it."""

    id: str
    host: str
    pid: int
    role: InstanceRole = InstanceRole.STANDBY
    version: str
    started_at: datetime
    last_seen: datetime = Field(default_factory=utcnow)
    #: the workers' queues it takes runs from (a worker's; empty for a scheduler)
    queues: list[str] = Field(default_factory=list)


def truncate(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 20] + "\n…[truncated]"


class AddJob(BaseModel):
    """Payload of an ``add`` command: schedule a registered function."""

    model_config = ConfigDict(extra="forbid")

    func: str = Field(description="registered function as 'module:qualname'")
    trigger: TriggerSpec
    name: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    options: JobOptions = JobOptions()


class Reschedule(BaseModel):
    """Payload of a ``reschedule`` command."""

    model_config = ConfigDict(extra="forbid")

    trigger: TriggerSpec


class ModifyJob(BaseModel):
    """Payload of a ``modify`` command: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    trigger: TriggerSpec | None = None
    kwargs: dict[str, Any] | None = None
    options: dict[str, Any] | None = Field(default=None, description="JobOptions fields to change")
