"""How runs are indexed in Redis, and how a run listing pages through an index."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

from sundial.backends import history
from sundial.backends.redis import keys
from sundial.models import Run

if TYPE_CHECKING:
    from redis.client import Pipeline


def index(pipe: Pipeline[str], run: Run) -> None:
    """Queue the writes that store ``run`` and list it in every index it belongs to."""
    scheduled, started = keys.micros(run.scheduled_time), keys.micros(history.started_at(run))
    member = run.run_id
    pipe.set(keys.run(member), run.model_dump_json())
    pipe.zadd(keys.RUNS, {member: scheduled})
    pipe.zadd(keys.runs_by_outcome(run.outcome), {member: scheduled})
    pipe.zadd(keys.job_runs(run.job_id), {member: scheduled})
    pipe.zadd(keys.job_runs_by_outcome(run.job_id, run.outcome), {member: scheduled})
    pipe.zadd(keys.job_runs_by_start(run.job_id), {member: started})
    pipe.zadd(keys.job_runs_by_outcome_and_start(run.job_id, run.outcome), {member: started})
    if history.is_final(run.outcome):
        pipe.srem(keys.RUNNING, member)
    else:
        pipe.sadd(keys.RUNNING, member)


def unindex(pipe: Pipeline[str], run: Run) -> None:
    """Queue the writes that take ``run`` (as stored) out of every index."""
    member = run.run_id
    pipe.zrem(keys.RUNS, member)
    pipe.zrem(keys.runs_by_outcome(run.outcome), member)
    pipe.zrem(keys.job_runs(run.job_id), member)
    pipe.zrem(keys.job_runs_by_outcome(run.job_id, run.outcome), member)
    pipe.zrem(keys.job_runs_by_start(run.job_id), member)
    pipe.zrem(keys.job_runs_by_outcome_and_start(run.job_id, run.outcome), member)
    pipe.srem(keys.RUNNING, member)


def older_ids(
    client: redis.Redis[str],
    index_key: str,
    floor: int | str,
    bound: tuple[int, str] | None,
    count: int,
) -> list[tuple[str, int]]:
    """Up to ``count`` (run id, score) of an index, newest first, strictly before
    ``bound`` = (score, run id) and not below ``floor``."""
    found: list[tuple[str, int]] = []
    top: int | str = "+inf"
    if bound is not None:
        score, run_id = bound
        if not isinstance(floor, int) or score >= floor:
            # Entries with the bound's own score follow it when their id is smaller.
            ties = client.zrangebyscore(index_key, score, score)
            found = [(member, score) for member in reversed(ties) if member < run_id]
            found = found[:count]
        top = f"({score}"
    if len(found) < count:
        rest = client.zrevrangebyscore(
            index_key, top, floor, start=0, num=count - len(found), withscores=True
        )
        found.extend((member, int(score)) for member, score in rest)
    return found
