"""Request and response models of the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from sundial.constants import JOB_ID_RULE
from sundial.jobs import JOB_ID_PATTERN
from sundial.models import (
    AddJob,
    CommandKind,
    CommandState,
    InstanceRole,
    JobOptions,
    JobSource,
    JobState,
    Outcome,
)
from sundial.triggers import SAMPLE_FIRES, TriggerSpec, in_words, upcoming
from sundial_api.cursors import JOB_CURSOR_PATTERN, RUN_CURSOR_PATTERN

HealthStatus = Literal["healthy", "degraded", "unhealthy"]


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. not_found")
    message: str = Field(description="what is wrong and what to do about it")
    details: list[dict[str, str]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# jobs -----------------------------------------------------------------------------------
class LastRun(BaseModel):
    """Digest of a job's finished runs."""

    at: datetime | None = None
    outcome: Outcome | None = None
    duration_seconds: float | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    consecutive_failures: int = 0


class JobSummary(BaseModel):
    id: str
    name: str
    func: str
    state: JobState
    trigger: TriggerSpec
    trigger_text: str = Field(description="the trigger in words")
    next_run_time: datetime | None
    critical: bool
    tags: tuple[str, ...]
    source: JobSource
    last_run: LastRun | None


class DurationStats(BaseModel):
    mean: float
    p50: float
    p95: float
    max: float


class RecentStats(BaseModel):
    """Over the most recent finished runs (``window`` at most)."""

    window: int
    runs: int
    outcomes: dict[Outcome, int]
    success_rate: float | None = Field(
        description="successes / runs that executed (missed and skipped runs excluded)"
    )
    duration_seconds: DurationStats | None


class JobDetail(JobSummary):
    description: str
    kwargs: dict[str, Any] = Field(description="keyword arguments; secret values are masked")
    options: JobOptions
    expected_interval_seconds: float | None
    fingerprint: str
    updated_at: datetime
    running: list[RunOut]
    recent: RecentStats

    @computed_field(description="the trigger in English words")  # type: ignore[prop-decorator]
    @property
    def trigger_in_words(self) -> str:
        return in_words(self.trigger)

    @computed_field(  # type: ignore[prop-decorator]
        description=f"the next {SAMPLE_FIRES} fire times from now; none while paused"
    )
    @property
    def next_fire_times(self) -> list[datetime]:
        if self.state is JobState.PAUSED:
            return []
        return upcoming(self.trigger, datetime.now(UTC))


class JobPage(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null on the last page",
        pattern=JOB_CURSOR_PATTERN,
    )


class CreateJob(AddJob):
    """Schedule a registered function (``module:qualname``) under a new job id."""

    id: str = Field(description=JOB_ID_RULE, examples=["nightly_export"])

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not JOB_ID_PATTERN.match(value):
            raise ValueError(f"invalid job id {value!r}: {JOB_ID_RULE}")
        return value


# runs -----------------------------------------------------------------------------------
class RunOut(BaseModel):
    run_id: str
    job_id: str
    scheduled_time: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    outcome: Outcome
    attempt: int
    manual: bool
    error_type: str | None
    error_message: str | None
    traceback: str | None = Field(description="recorded traceback, truncated")
    instance_id: str
    event_loop_blocked_seconds: float = Field(
        description="time this async run blocked the event loop (each block past the "
        "process's SUNDIAL_EVENT_LOOP_BLOCKED_SECONDS); 0 if it never did"
    )


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null on the last page",
        pattern=RUN_CURSOR_PATTERN,
    )


# commands -------------------------------------------------------------------------------
class CommandOut(BaseModel):
    id: str
    kind: CommandKind
    job_id: str
    state: CommandState
    reason: str | None
    payload: dict[str, Any] = Field(description="the requested change; secret values masked")
    created_at: datetime
    finished_at: datetime | None


class CommandAccepted(BaseModel):
    """Answer to a mutation: the queued command and where to follow it."""

    command_id: str
    kind: CommandKind
    job_id: str
    state: CommandState
    reason: str | None = None
    url: str


# scheduler and health -------------------------------------------------------------------
class InstanceOut(BaseModel):
    id: str
    host: str
    pid: int
    role: InstanceRole
    version: str
    started_at: datetime
    last_seen: datetime
    heartbeat_age_seconds: float
    alive: bool = Field(description="heartbeat seen within 3 heartbeat intervals")


class SchedulerStatus(BaseModel):
    leader: str | None = Field(description="id of the live leader, if any")
    leader_present: bool
    live_instances: int
    heartbeat_age_seconds: float | None = Field(
        description="age of the freshest heartbeat of any instance; null when none ever beat"
    )
    instances: list[InstanceOut]


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    version: str
    queues: list[str] = Field(description="the workers' queues it takes runs from")
    started_at: datetime
    last_seen: datetime
    heartbeat_age_seconds: float
    state: Literal["alive", "dead"] = Field(
        description="dead once silent for 3 heartbeat intervals (at least the leader lease)"
    )
    running: list[RunOut] = Field(description="the runs it executes now")


class WorkerList(BaseModel):
    live: int = Field(description="workers whose heartbeat is recent")
    workers: list[WorkerOut] = Field(description="live workers first, then dead ones by id")


class BackendStatus(BaseModel):
    kind: str
    up: bool
    error: str | None = None
    latency_ms: float | None = None


class NextRun(BaseModel):
    job_id: str
    name: str
    next_run_time: datetime
    trigger_text: str


class JobCounts(BaseModel):
    total: int
    scheduled: int
    paused: int


class HealthDetailed(BaseModel):
    status: HealthStatus = Field(
        description="healthy: backend up and a live leader; degraded: a live leader but "
        "trouble (several leaders, dead instances listed); unhealthy: backend down or no "
        "live leader"
    )
    problems: list[str]
    checked_at: datetime
    backend: BackendStatus
    scheduler: SchedulerStatus | None
    jobs: JobCounts | None
    next_runs: list[NextRun]


class Alive(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    backend: str


JobDetail.model_rebuild()


#: documented on every router so that the OpenAPI schema matches the error bodies
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "unreadable request: malformed JSON, NUL in URL"},
    422: {"model": ErrorResponse, "description": "invalid input; the message names the field"},
    503: {"model": ErrorResponse, "description": "the backend is unreachable"},
}


# triggers -------------------------------------------------------------------------------
#: the most fire times one preview lists
MAX_PREVIEW_FIRES = 50


class TriggerPreviewRequest(BaseModel):
    """A trigger to check before saving it, e.g. ``{"trigger": {"type": "cron",
    "expression": "30 2 * * sun", "timezone": "Europe/Berlin"}}``."""

    model_config = ConfigDict(extra="forbid")

    trigger: TriggerSpec
    count: int = Field(
        default=SAMPLE_FIRES, ge=1, le=MAX_PREVIEW_FIRES, description="fire times to list"
    )


class TriggerPreview(BaseModel):
    """What a trigger means: in words, and when it fires next."""

    trigger: TriggerSpec = Field(description="the trigger as it would be saved")
    trigger_text: str = Field(description="the trigger as the catalog names it")
    trigger_in_words: str
    next_fire_times: list[datetime] = Field(description="from now, in the trigger's time zone")
    expected_interval_seconds: float | None = Field(
        description="the longest gap between fires in a sample; null for one-off triggers"
    )
