"""The Redis backend's key layout, and the encodings of times and records in it.

Everything lives under ``sundial:``; the variable part of a key comes last (a claim's
fire time follows its job id but never contains ``:``), so a job id that contains ``:``
cannot collide with another key. Times in scores are µs since the epoch.

  sundial:aps:jobs                         hash    APScheduler job store: id -> pickle
  sundial:aps:run_times                    zset    APScheduler job store: id -> next run
  sundial:jobs                             hash    catalog: job id -> JobView JSON
  sundial:jobs:ids                         zset    every job id, score 0 (lex paging)
  sundial:jobs:state:{state}               zset    job ids in that state, score 0
  sundial:jobs:tag:{tag}                   zset    job ids with that tag, score 0
  sundial:run:{run_id}                     string  Run JSON
  sundial:runs:all                         zset    run id -> scheduled time
  sundial:runs:outcome:{o}                 zset    run id -> scheduled time
  sundial:runs:job:{job_id}                zset    run id -> scheduled time (capped)
  sundial:runs:job-outcome:{o}:{job_id}    zset    run id -> scheduled time
  sundial:runs:job-started:{job_id}        zset    run id -> start time
  sundial:runs:job-outcome-started:{o}:{job_id}
                                           zset    run id -> start time
  sundial:runs:running                     set     ids of runs still running
  sundial:summaries                        hash    job id -> StoredSummary JSON
  sundial:claim:{job_id}:{µs}              string  claimant of one fire time, 7-day TTL
  sundial:claims                           zset    claim key -> fire time (for prune)
  sundial:command:{id}                     string  Command JSON
  sundial:commands:pending                 zset    pending command id -> created time
  sundial:commands:finished                zset    finished command id -> finished time
  sundial:commands:stream                  stream  one entry per enqueued command
  sundial:instances                        hash    instance id -> Instance JSON
  sundial:leader                           string  leader's instance id; TTL = lease
  sundial:dramatiq:*                       Dramatiq's own keys: its queues, delay queues,
                                           acks and broker heartbeats (see redis/queue.py)

Integer microseconds keep scores exact (a float timestamp would round). Redis sorts
equal scores by member, which is exactly the ``(time, run_id)`` order run listings and
their cursor need.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel

from sundial.models import JobState, Outcome

PREFIX = "sundial:"
APS_JOBS = PREFIX + "aps:jobs"
APS_RUN_TIMES = PREFIX + "aps:run_times"
JOBS = PREFIX + "jobs"
JOB_IDS = PREFIX + "jobs:ids"
RUNS = PREFIX + "runs:all"
RUNNING = PREFIX + "runs:running"
SUMMARIES = PREFIX + "summaries"
PENDING_COMMANDS = PREFIX + "commands:pending"
FINISHED_COMMANDS = PREFIX + "commands:finished"
COMMAND_STREAM = PREFIX + "commands:stream"
CLAIMS = PREFIX + "claims"
INSTANCES = PREFIX + "instances"
LEADER = PREFIX + "leader"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_M = TypeVar("_M", bound=BaseModel)


def job_state(state: JobState) -> str:
    return f"{PREFIX}jobs:state:{state.value}"


def job_tag(tag: str) -> str:
    return f"{PREFIX}jobs:tag:{tag}"


def run(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}"


def runs_by_outcome(outcome: Outcome) -> str:
    return f"{PREFIX}runs:outcome:{outcome.value}"


def job_runs(job_id: str) -> str:
    return f"{PREFIX}runs:job:{job_id}"


def job_runs_by_outcome(job_id: str, outcome: Outcome) -> str:
    return f"{PREFIX}runs:job-outcome:{outcome.value}:{job_id}"


def job_runs_by_start(job_id: str) -> str:
    return f"{PREFIX}runs:job-started:{job_id}"


def job_runs_by_outcome_and_start(job_id: str, outcome: Outcome) -> str:
    return f"{PREFIX}runs:job-outcome-started:{outcome.value}:{job_id}"


def claim(job_id: str, scheduled_time: datetime) -> str:
    return f"{PREFIX}claim:{job_id}:{micros(scheduled_time)}"


def command(command_id: str) -> str:
    return f"{PREFIX}command:{command_id}"


# encodings ----------------------------------------------------------------------------
def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def micros(moment: datetime) -> int:
    """Exact integer score for a time (a float timestamp would round)."""
    return (utc(moment) - _EPOCH) // timedelta(microseconds=1)


def in_utc(model: _M) -> _M:
    """``model`` with its top-level datetimes in UTC (nested trigger times keep theirs)."""
    updates = {name: utc(value) for name, value in model if isinstance(value, datetime)}
    return model.model_copy(update=updates) if updates else model


def load(model: type[_M], raw: str | None) -> _M | None:
    return None if raw is None else in_utc(model.model_validate_json(raw))
