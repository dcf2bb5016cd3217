"""Redis backend: every piece of shared state in one Redis database.

Key layout. Everything lives under ``sundial:``; the variable part of a key comes last
(a claim's fire time follows its job id but never contains ``:``), so a job id that
contains ``:`` cannot collide with another key. Times in scores are µs since the epoch.

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
  sundial:summaries                        hash    job id -> RunSummary JSON
  sundial:claim:{job_id}:{µs}              string  claimant of one fire time, 7-day TTL
  sundial:claims                           zset    claim key -> fire time (for prune)
  sundial:command:{id}                     string  Command JSON
  sundial:commands:pending                 zset    pending command id -> created time
  sundial:commands:finished                zset    finished command id -> finished time
  sundial:commands:stream                  stream  one entry per enqueued command
  sundial:instances                        hash    instance id -> Instance JSON
  sundial:leader                           string  leader's instance id; TTL = lease

Integer microseconds keep scores exact (a float timestamp would round). Redis sorts
equal scores by member, which is exactly the ``(time, run_id)`` order run listings and
their cursor need. Run history is capped at :data:`MAX_RUNS_PER_JOB` newest runs per job
(older ones are deleted with their documents) and pruned by age with
:meth:`RedisBackend.prune`, which also drops old claims (their TTL expires them anyway
if pruning never runs).

Every multi-key change is one MULTI/EXEC transaction. Changes that depend on what is
stored (replacing a run, updating summaries, moving a job between index sets) WATCH the
keys they read, so two writers cannot interleave a read and a write.

A run saved is as durable as the server's persistence makes it: run Redis with
``appendonly yes`` where history must survive a Redis restart.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

import redis
from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.redis import RedisJobStore
from pydantic import BaseModel
from redis.backoff import EqualJitterBackoff
from redis.exceptions import WatchError
from redis.retry import Retry

from sundial.backends.base import Backend, BackendError, RunCursor
from sundial.models import (
    Command,
    CommandState,
    Instance,
    JobState,
    JobView,
    Outcome,
    Run,
    RunSummary,
    utcnow,
)

if TYPE_CHECKING:
    from redis.client import Pipeline

PREFIX = "sundial:"
APS_JOBS_KEY = PREFIX + "aps:jobs"
APS_RUN_TIMES_KEY = PREFIX + "aps:run_times"
JOBS_KEY = PREFIX + "jobs"
JOB_IDS_KEY = PREFIX + "jobs:ids"
RUNS_KEY = PREFIX + "runs:all"
RUNNING_KEY = PREFIX + "runs:running"
SUMMARIES_KEY = PREFIX + "summaries"
PENDING_KEY = PREFIX + "commands:pending"
FINISHED_COMMANDS_KEY = PREFIX + "commands:finished"
STREAM_KEY = PREFIX + "commands:stream"
CLAIMS_KEY = PREFIX + "claims"
INSTANCES_KEY = PREFIX + "instances"
LEADER_KEY = PREFIX + "leader"

#: newest runs kept per job; a busy job cannot grow history without bound between prunes
MAX_RUNS_PER_JOB = 10_000
#: a claim only has to outlive every retry of its fire time (misfire grace is minutes)
CLAIM_TTL = timedelta(days=7)
#: the stream only wakes the leader; pending commands live in their own keys
STREAM_MAX_LENGTH = 1_000
#: fail fast on a dead server instead of hanging a scheduler wakeup
SOCKET_TIMEOUT_SECONDS = 5.0
#: PING a connection idle this long before use, so a restarted Redis is noticed
HEALTH_CHECK_INTERVAL_SECONDS = 30
#: longest single XREAD BLOCK; longer waits loop, so the socket timeout can stay finite
MAX_BLOCK_SECONDS = 30.0
#: optimistic transactions retried this often before giving up (only the leader writes,
#: so conflicts are rare; a bound keeps a pathological case from spinning forever)
MAX_TRANSACTION_ATTEMPTS = 20
#: ids read per round trip when a listing has to skip entries
SCAN_CHUNK = 200
#: runs, commands or claims deleted per transaction while pruning or capping
PRUNE_CHUNK = 500
#: a standby that finds the leader lock this close to expiring (a fraction of the lease,
#: the scheduler's polling interval at most) waits for the expiry and tries once more
LEADER_EXPIRY_WAIT_FRACTION = 1 / 3
LEADER_EXPIRY_MARGIN_SECONDS = 0.01
_FAILED = frozenset({Outcome.FAILURE, Outcome.TIMEOUT})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# KEYS: leader. ARGV: instance id, lease ms. Extends the lease only if it is ours.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: leader. ARGV: instance id. Deletes the lock only if it is ours.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# KEYS: pending, finished, command doc. ARGV: id, JSON, finished µs.
# The ZREM decides the race: only the call that removes the id from pending writes.
_FINISH_COMMAND_LUA = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('SET', KEYS[3], ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return 1
end
return 0
"""

_P = ParamSpec("_P")
_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)


# keys -------------------------------------------------------------------------------
def _state_key(state: JobState) -> str:
    return f"{PREFIX}jobs:state:{state.value}"


def _tag_key(tag: str) -> str:
    return f"{PREFIX}jobs:tag:{tag}"


def _run_key(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}"


def _outcome_key(outcome: Outcome) -> str:
    return f"{PREFIX}runs:outcome:{outcome.value}"


def _job_runs_key(job_id: str) -> str:
    return f"{PREFIX}runs:job:{job_id}"


def _job_outcome_key(job_id: str, outcome: Outcome) -> str:
    return f"{PREFIX}runs:job-outcome:{outcome.value}:{job_id}"


def _job_started_key(job_id: str) -> str:
    return f"{PREFIX}runs:job-started:{job_id}"


def _job_outcome_started_key(job_id: str, outcome: Outcome) -> str:
    return f"{PREFIX}runs:job-outcome-started:{outcome.value}:{job_id}"


def _claim_key(job_id: str, scheduled_time: datetime) -> str:
    return f"{PREFIX}claim:{job_id}:{_micros(scheduled_time)}"


def _command_key(command_id: str) -> str:
    return f"{PREFIX}command:{command_id}"


# time -------------------------------------------------------------------------------
def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _micros(moment: datetime) -> int:
    """Exact integer score for a time (a float timestamp would round)."""
    return (_utc(moment) - _EPOCH) // timedelta(microseconds=1)


def _in_utc(model: _M) -> _M:
    """``model`` with its top-level datetimes in UTC (nested trigger times keep theirs)."""
    updates = {name: _utc(value) for name, value in model if isinstance(value, datetime)}
    return model.model_copy(update=updates) if updates else model


def _load(model: type[_M], raw: str | None) -> _M | None:
    return None if raw is None else _in_utc(model.model_validate_json(raw))


# runs -------------------------------------------------------------------------------
def _started(run: Run) -> datetime:
    """When a run started; a missed or skipped run never did, so its fire time."""
    return run.started_at or run.scheduled_time


def _finished(run: Run) -> datetime:
    """When a run ended; a missed or skipped run may carry no finish time."""
    return run.finished_at or run.scheduled_time


def _index_run(pipe: Pipeline[str], run: Run) -> None:
    scheduled, started = _micros(run.scheduled_time), _micros(_started(run))
    member = run.run_id
    pipe.set(_run_key(member), run.model_dump_json())
    pipe.zadd(RUNS_KEY, {member: scheduled})
    pipe.zadd(_outcome_key(run.outcome), {member: scheduled})
    pipe.zadd(_job_runs_key(run.job_id), {member: scheduled})
    pipe.zadd(_job_outcome_key(run.job_id, run.outcome), {member: scheduled})
    pipe.zadd(_job_started_key(run.job_id), {member: started})
    pipe.zadd(_job_outcome_started_key(run.job_id, run.outcome), {member: started})
    if run.outcome is Outcome.RUNNING:
        pipe.sadd(RUNNING_KEY, member)
    else:
        pipe.srem(RUNNING_KEY, member)


def _unindex_run(pipe: Pipeline[str], run: Run) -> None:
    member = run.run_id
    pipe.zrem(RUNS_KEY, member)
    pipe.zrem(_outcome_key(run.outcome), member)
    pipe.zrem(_job_runs_key(run.job_id), member)
    pipe.zrem(_job_outcome_key(run.job_id, run.outcome), member)
    pipe.zrem(_job_started_key(run.job_id), member)
    pipe.zrem(_job_outcome_started_key(run.job_id, run.outcome), member)
    pipe.srem(RUNNING_KEY, member)


class _StoredSummary(RunSummary):
    """A summary as stored, with the finish times that order runs arriving late."""

    last_finished_at: datetime | None = None
    last_success_finished_at: datetime | None = None


def _fold(summary: _StoredSummary, run: Run) -> _StoredSummary:
    """``summary`` after the finished ``run`` (the same rules as the SQL backend).

    Runs are ordered by finish time: one that finished before what the summary already
    describes (a late write) changes only what it can be known to precede.
    """
    finished = _finished(run)
    ran_at = _started(run)
    update: dict[str, Any] = {}
    if summary.last_finished_at is None or finished >= summary.last_finished_at:
        update.update(
            last_run_at=ran_at,
            last_outcome=run.outcome,
            last_duration_seconds=run.duration_seconds,
            last_finished_at=finished,
        )
    last_success = summary.last_success_finished_at
    if run.outcome is Outcome.SUCCESS:
        if last_success is None or finished >= last_success:
            update.update(
                last_success_at=ran_at, last_success_finished_at=finished, consecutive_failures=0
            )
    elif run.outcome in _FAILED:
        if last_success is None or finished > last_success:
            update["consecutive_failures"] = summary.consecutive_failures + 1
        if summary.last_failure_at is None or ran_at > summary.last_failure_at:
            update["last_failure_at"] = ran_at
    return summary.model_copy(update=update)


# connection -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Target:
    """Where the server is, parsed once from the URL (the password never leaves here)."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None = field(repr=False)
    ssl: bool = False

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise BackendError(f"not a Redis URL (scheme {parts.scheme!r}); use redis://")
        if parts.query:
            # Silently dropping options such as TLS settings would be worse than refusing.
            raise BackendError(
                f"Redis URL for {parts.hostname}: query options are not supported; "
                "use redis[s]://[user[:password]@]host[:port][/db]"
            )
        path = parts.path.strip("/")
        try:
            port = parts.port or 6379
            db = int(path) if path else 0
        except ValueError:
            raise BackendError(
                f"Redis URL for {parts.hostname}: port and database must be numbers, "
                "as in redis://host:6379/0"
            ) from None
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "rediss",
        )

    def describe(self) -> str:
        return f"redis backend at {self.host}:{self.port}/{self.db}"

    def connect_args(self, *, socket_timeout: float = SOCKET_TIMEOUT_SECONDS) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis`` (and so for ``RedisJobStore``)."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "ssl": self.ssl,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": SOCKET_TIMEOUT_SECONDS,
            "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
            # Lets an operator tell Sundial's connections apart in CLIENT LIST.
            "client_name": f"sundial-{os.getpid()}",
            "retry": Retry(EqualJitterBackoff(cap=1.0, base=0.05), retries=3),
        }


def _guarded(
    method: Callable[Concatenate[RedisBackend, _P], _T],
) -> Callable[Concatenate[RedisBackend, _P], _T]:
    """Turn redis-py errors into :class:`BackendError` that name the server, not secrets."""

    @functools.wraps(method)
    def call(backend: RedisBackend, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(backend, *args, **kwargs)
        except redis.RedisError as error:
            raise backend._backend_error(method.__name__, error) from None

    return call


class RedisBackend(Backend):
    """Sundial's shared state in Redis (see the module docstring for the key layout)."""

    kind = "redis"

    def __init__(self, url: str) -> None:
        self._target = _Target.parse(url)
        self._client: redis.Redis[str] = redis.Redis(
            db=self._target.db, decode_responses=True, **self._target.connect_args()
        )
        # XREAD BLOCK holds its connection for up to MAX_BLOCK_SECONDS: it gets its own
        # client whose socket timeout outlasts the block, so it is not cut off mid-wait.
        self._blocking: redis.Redis[str] = redis.Redis(
            db=self._target.db,
            decode_responses=True,
            **self._target.connect_args(socket_timeout=MAX_BLOCK_SECONDS + SOCKET_TIMEOUT_SECONDS),
        )
        self._renew = self._client.register_script(_RENEW_LUA)
        self._release = self._client.register_script(_RELEASE_LUA)
        self._finish_command = self._client.register_script(_FINISH_COMMAND_LUA)
        self._stream_id: str | None = None
        self._leader_id: str | None = None

    def __repr__(self) -> str:
        return f"RedisBackend({self._target.describe()})"

    def _backend_error(self, operation: str, error: redis.RedisError) -> BackendError:
        detail = str(error)
        if self._target.password:
            detail = detail.replace(self._target.password, "***")
        return BackendError(
            f"{self._target.describe()} failed during {operation}: {type(error).__name__}: {detail}"
        )

    def _transact(self, operation: str, body: Callable[[Pipeline[str]], _T], *keys: str) -> _T:
        """Run ``body`` as WATCH ``keys`` -> read -> MULTI -> EXEC, retried on conflict.

        ``body`` reads through ``self._client``: the WATCH was set before, so any change
        to the keys after the read still aborts the EXEC, whatever connection read them.
        ``body`` must call ``pipe.multi()`` before queuing writes.
        """
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(MAX_TRANSACTION_ATTEMPTS):
                try:
                    pipe.watch(*keys)
                    result = body(pipe)
                    pipe.execute()
                except WatchError:
                    pipe.reset()
                    continue
                return result
        raise BackendError(
            f"{self._target.describe()}: {operation} kept conflicting with another writer "
            f"({MAX_TRANSACTION_ATTEMPTS} attempts); is a second leader running?"
        )

    # lifecycle ------------------------------------------------------------------------
    @_guarded
    def setup(self) -> None:
        """Nothing to create: Redis makes keys on first write. Checks the connection."""
        self._client.ping()

    def close(self) -> None:
        if self._leader_id is not None:
            try:
                self.release_leadership(self._leader_id)
            except BackendError:
                pass  # the lease expires on its own; closing must not fail on an outage
        self._client.close()
        self._blocking.close()

    @_guarded
    def ping(self) -> None:
        self._client.ping()

    def create_jobstore(self) -> BaseJobStore:
        # A client of its own without decode_responses: the job store holds pickles.
        store: BaseJobStore = RedisJobStore(
            db=self._target.db,
            jobs_key=APS_JOBS_KEY,
            run_times_key=APS_RUN_TIMES_KEY,
            **self._target.connect_args(),
        )
        return store

    # catalog --------------------------------------------------------------------------
    def _job_index_keys(self, job: JobView) -> list[str]:
        return [_state_key(job.state), *(_tag_key(tag) for tag in job.options.tags)]

    @_guarded
    def save_jobs(self, jobs: Sequence[JobView]) -> None:
        latest = {job.id: _in_utc(job) for job in jobs}
        if not latest:
            return
        ids = list(latest)

        def body(pipe: Pipeline[str]) -> None:
            old = self._client.hmget(JOBS_KEY, ids)
            pipe.multi()
            for raw in old:
                previous = _load(JobView, raw)
                if previous is not None:
                    for key in self._job_index_keys(previous):
                        pipe.zrem(key, previous.id)
            for job in latest.values():
                pipe.hset(JOBS_KEY, job.id, job.model_dump_json())
                for key in (JOB_IDS_KEY, *self._job_index_keys(job)):
                    pipe.zadd(key, {job.id: 0})

        self._transact("save_jobs", body, JOBS_KEY)

    @_guarded
    def delete_jobs(self, job_ids: Collection[str]) -> None:
        ids = list(job_ids)
        if not ids:
            return

        def body(pipe: Pipeline[str]) -> None:
            old = self._client.hmget(JOBS_KEY, ids)
            pipe.multi()
            for raw in old:
                previous = _load(JobView, raw)
                if previous is not None:
                    for key in self._job_index_keys(previous):
                        pipe.zrem(key, previous.id)
            pipe.hdel(JOBS_KEY, *ids)
            pipe.zrem(JOB_IDS_KEY, *ids)

        self._transact("delete_jobs", body, JOBS_KEY)

    @_guarded
    def get_job(self, job_id: str) -> JobView | None:
        return _load(JobView, self._client.hget(JOBS_KEY, job_id))

    @_guarded
    def list_jobs(
        self,
        *,
        state: JobState | None = None,
        tag: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[JobView]:
        if limit <= 0:
            return []
        # Page one index by id; when both filters apply, page the tag index and check the
        # state on each document, reading more ids than needed to fill the page.
        if tag is not None:
            index = _tag_key(tag)
        elif state is not None:
            index = _state_key(state)
        else:
            index = JOB_IDS_KEY
        check_state = state if tag is not None else None
        chunk = limit if check_state is None else max(limit, SCAN_CHUNK)
        start = "-" if after is None else f"({after}"
        jobs: list[JobView] = []
        while len(jobs) < limit:
            ids = self._client.zrangebylex(index, start, "+", start=0, num=chunk)
            if not ids:
                break
            for raw in self._client.hmget(JOBS_KEY, ids):
                job = _load(JobView, raw)
                if job is not None and (check_state is None or job.state is check_state):
                    jobs.append(job)
            if len(ids) < chunk:
                break
            start = f"({ids[-1]}"
        return jobs[:limit]

    @_guarded
    def count_jobs(self) -> dict[JobState, int]:
        with self._client.pipeline(transaction=False) as pipe:
            for state in JobState:
                pipe.zcard(_state_key(state))
            counts = pipe.execute()
        return {state: int(count) for state, count in zip(JobState, counts, strict=True)}

    # runs -----------------------------------------------------------------------------
    @_guarded
    def claim_runs(
        self, claims: Sequence[tuple[str, datetime]], instance_id: str
    ) -> set[tuple[str, datetime]]:
        keys = {_claim_key(job_id, when): (job_id, when) for job_id, when in claims}
        if not keys:
            return set()
        # A nonce makes a retried transaction (reply lost, commands applied) recognise
        # its own claims instead of reporting them taken, which would drop the runs.
        token = f"{instance_id}:{uuid.uuid4().hex}"
        with self._client.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.set(key, token, nx=True, ex=CLAIM_TTL)
                pipe.get(key)
            # Indexed by fire time so that prune() can drop claims before their TTL.
            pipe.zadd(CLAIMS_KEY, {key: _micros(when) for key, (_, when) in keys.items()})
            replies = pipe.execute()
        # Each SET NX is followed by a GET of its key: the claim is ours if that reads
        # our token, whether this SET or the lost-reply attempt before it wrote it.
        holders = replies[1:-1:2]
        return {
            claim for claim, holder in zip(keys.values(), holders, strict=True) if holder == token
        }

    @_guarded
    def save_runs(self, runs: Sequence[Run]) -> None:
        self._save_runs(runs, only_if_running=False)

    def _save_runs(self, runs: Sequence[Run], *, only_if_running: bool) -> int:
        """Write ``runs`` and fold newly finished ones into summaries, in one transaction.

        Idempotent, so a batch retried after a lost reply is harmless: a run already
        stored as finished is not counted again, nor turned back into ``running``.
        With ``only_if_running`` a run is written only while its stored copy is running.
        Returns the number of runs written.
        """
        latest = {run.run_id: _in_utc(run) for run in runs}
        if not latest:
            return 0
        ids = list(latest)
        doc_keys = [_run_key(run_id) for run_id in ids]

        def body(pipe: Pipeline[str]) -> int:
            stored = {
                run_id: _load(Run, raw)
                for run_id, raw in zip(ids, self._client.mget(doc_keys), strict=True)
            }
            writes: list[tuple[Run | None, Run]] = []
            newly_finished: list[Run] = []
            for run_id, run in latest.items():
                old = stored[run_id]
                was_running = old is None or old.outcome is Outcome.RUNNING
                if (only_if_running and (old is None or not was_running)) or (
                    not was_running and run.outcome is Outcome.RUNNING
                ):
                    continue
                writes.append((old, run))
                if was_running and run.outcome is not Outcome.RUNNING:
                    newly_finished.append(run)
            summaries = self._fold_summaries(newly_finished)
            pipe.multi()
            for old, run in writes:
                if old is not None:
                    _unindex_run(pipe, old)
                _index_run(pipe, run)
            for job_id, summary in summaries.items():
                pipe.hset(SUMMARIES_KEY, job_id, summary)
            return len(writes)

        written = self._transact("save_runs", body, SUMMARIES_KEY, *doc_keys)
        self._cap_history({run.job_id for run in latest.values()})
        return written

    def _fold_summaries(self, finished: list[Run]) -> dict[str, str]:
        """Updated summary JSON per job for runs that just finished, in finish order."""
        if not finished:
            return {}
        job_ids = sorted({run.job_id for run in finished})
        summaries = {
            job_id: _load(_StoredSummary, raw) or _StoredSummary(job_id=job_id)
            for job_id, raw in zip(job_ids, self._client.hmget(SUMMARIES_KEY, job_ids), strict=True)
        }
        for run in sorted(finished, key=_finished):
            summaries[run.job_id] = _fold(summaries[run.job_id], run)
        return {job_id: summary.model_dump_json() for job_id, summary in summaries.items()}

    def _cap_history(self, job_ids: Iterable[str]) -> None:
        """Delete the oldest runs of jobs that have more than MAX_RUNS_PER_JOB."""
        jobs = sorted(job_ids)
        with self._client.pipeline(transaction=False) as pipe:
            for job_id in jobs:
                pipe.zcard(_job_runs_key(job_id))
            sizes = pipe.execute()
        for job_id, size in zip(jobs, sizes, strict=True):
            excess = int(size) - MAX_RUNS_PER_JOB
            while excess > 0:
                oldest = self._client.zrange(_job_runs_key(job_id), 0, min(excess, PRUNE_CHUNK) - 1)
                if not oldest:
                    break
                self._delete_runs(oldest, keep=lambda run: False)
                excess -= len(oldest)

    def _delete_runs(self, run_ids: list[str], *, keep: Callable[[Run], bool]) -> tuple[int, int]:
        """Delete runs, with their index entries, unless ``keep`` them.

        Returns (deleted, kept); ``keep`` sees each run as stored, inside the WATCH.
        """
        doc_keys = [_run_key(run_id) for run_id in run_ids]

        def body(pipe: Pipeline[str]) -> tuple[int, int]:
            docs = self._client.mget(doc_keys)
            pipe.multi()
            deleted = kept = 0
            for run_id, raw in zip(run_ids, docs, strict=True):
                run = _load(Run, raw)
                if run is None:
                    # An index entry without its document: drop what can be found.
                    pipe.zrem(RUNS_KEY, run_id)
                    pipe.srem(RUNNING_KEY, run_id)
                elif keep(run):
                    kept += 1
                else:
                    _unindex_run(pipe, run)
                    pipe.delete(_run_key(run_id))
                    deleted += 1
            return deleted, kept

        return self._transact("delete runs", body, *doc_keys)

    @_guarded
    def get_run(self, run_id: str) -> Run | None:
        return _load(Run, self._client.get(_run_key(run_id)))

    @_guarded
    def list_runs(
        self,
        *,
        job_id: str | None = None,
        outcome: Outcome | None = None,
        since: datetime | None = None,
        before: RunCursor | None = None,
        limit: int = 100,
    ) -> list[Run]:
        if limit <= 0:
            return []
        if job_id is not None:
            index = _job_runs_key(job_id) if outcome is None else _job_outcome_key(job_id, outcome)
        else:
            index = RUNS_KEY if outcome is None else _outcome_key(outcome)
        floor = "-inf" if since is None else _micros(since)
        bound = None if before is None else (_micros(before.scheduled_time), before.run_id)
        runs: list[Run] = []
        while len(runs) < limit:
            page = self._older_ids(index, floor, bound, limit - len(runs))
            if not page:
                break
            for raw in self._client.mget([_run_key(run_id) for run_id, _ in page]):
                run = _load(Run, raw)
                # Re-check filters: a document is the truth if an index entry is stale.
                if run is not None and (outcome is None or run.outcome is outcome):
                    runs.append(run)
            bound = (page[-1][1], page[-1][0])
        return runs

    def _older_ids(
        self, index: str, floor: int | str, bound: tuple[int, str] | None, count: int
    ) -> list[tuple[str, int]]:
        """Up to ``count`` (run id, score) of ``index``, newest first, strictly before
        ``bound`` = (score, run id) and not below ``floor``."""
        found: list[tuple[str, int]] = []
        top: int | str = "+inf"
        if bound is not None:
            score, run_id = bound
            if not isinstance(floor, int) or score >= floor:
                # Entries with the bound's own score follow it when their id is smaller.
                ties = self._client.zrangebyscore(index, score, score)
                found = [(member, score) for member in reversed(ties) if member < run_id]
                found = found[:count]
            top = f"({score}"
        if len(found) < count:
            rest = self._client.zrevrangebyscore(
                index, top, floor, start=0, num=count - len(found), withscores=True
            )
            found.extend((member, int(score)) for member, score in rest)
        return found

    @_guarded
    def last_run(
        self, job_id: str, *, outcome: Outcome | None = None, since: datetime | None = None
    ) -> Run | None:
        index = (
            _job_started_key(job_id)
            if outcome is None
            else _job_outcome_started_key(job_id, outcome)
        )
        floor: int | str = "-inf" if since is None else _micros(since)
        offset = 0
        while True:
            # Usually the first id answers; reading a few covers index entries left
            # behind by a deleted document.
            ids = self._client.zrevrangebyscore(index, "+inf", floor, start=offset, num=10)
            if not ids:
                return None
            for raw in self._client.mget([_run_key(run_id) for run_id in ids]):
                run = _load(Run, raw)
                if run is not None and (outcome is None or run.outcome is outcome):
                    return run
            offset += len(ids)

    @_guarded
    def run_summaries(self, job_ids: Collection[str] | None = None) -> dict[str, RunSummary]:
        if job_ids is None:
            raw_by_job: dict[str, str | None] = dict(self._client.hgetall(SUMMARIES_KEY))
        else:
            wanted = sorted(set(job_ids))
            if not wanted:
                return {}
            values = self._client.hmget(SUMMARIES_KEY, wanted)
            raw_by_job = dict(zip(wanted, values, strict=True))
        summaries: dict[str, RunSummary] = {}
        for job_id, raw in raw_by_job.items():
            stored = _load(_StoredSummary, raw)
            if stored is not None:
                summaries[job_id] = RunSummary.model_validate(
                    stored.model_dump(include=set(RunSummary.model_fields))
                )
        return summaries

    @_guarded
    def interrupt_orphaned_runs(self, live_instance_ids: Collection[str]) -> int:
        live = set(live_instance_ids)
        running_ids = sorted(self._client.smembers(RUNNING_KEY))
        if not running_ids:
            return 0
        docs = self._client.mget([_run_key(run_id) for run_id in running_ids])
        orphans: list[Run] = []
        stale: list[str] = []
        for run_id, raw in zip(running_ids, docs, strict=True):
            run = _load(Run, raw)
            if run is None or run.outcome is not Outcome.RUNNING:
                stale.append(run_id)
            elif run.instance_id not in live:
                message = f"instance {run.instance_id} stopped before the run finished"
                orphans.append(
                    run.finish(Outcome.INTERRUPTED).model_copy(update={"error_message": message})
                )
        if stale:
            self._client.srem(RUNNING_KEY, *stale)
        # only_if_running: a run that finished after we read it keeps its real outcome.
        return self._save_runs(orphans, only_if_running=True)

    @_guarded
    def prune(self, older_than: datetime) -> int:
        cutoff = _utc(older_than)
        below = f"({_micros(cutoff)}"

        def keep(run: Run) -> bool:
            # A run is as old as its end: one still running, or that ended after the
            # cut-off though scheduled before it, stays.
            return run.outcome is Outcome.RUNNING or _finished(run) >= cutoff

        deleted = kept = 0
        while True:
            # Runs end after their fire time, so every candidate is scheduled before the
            # cut-off; step over the ones kept instead of reading them again.
            ids = self._client.zrangebyscore(RUNS_KEY, "-inf", below, start=kept, num=PRUNE_CHUNK)
            if not ids:
                break
            removed, skipped = self._delete_runs(ids, keep=keep)
            deleted += removed
            kept += skipped
        self._drop_older(FINISHED_COMMANDS_KEY, below, _command_key)
        self._drop_older(CLAIMS_KEY, below, lambda key: key)
        return deleted

    def _drop_older(self, index: str, below: str, doc_key: Callable[[str], str]) -> None:
        """Delete the members of ``index`` scored below ``below``, with their documents."""
        while members := self._client.zrangebyscore(index, "-inf", below, start=0, num=PRUNE_CHUNK):
            with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(*(doc_key(member) for member in members))
                pipe.zrem(index, *members)
                pipe.execute()

    # instances ------------------------------------------------------------------------
    @_guarded
    def heartbeat(self, instance: Instance) -> None:
        seen = _in_utc(instance).model_copy(update={"last_seen": utcnow()})
        self._client.hset(INSTANCES_KEY, instance.id, seen.model_dump_json())

    @_guarded
    def list_instances(self) -> list[Instance]:
        found = (_load(Instance, raw) for raw in self._client.hvals(INSTANCES_KEY))
        return sorted((instance for instance in found if instance), key=lambda i: i.id)

    @_guarded
    def remove_instance(self, instance_id: str) -> None:
        self._client.hdel(INSTANCES_KEY, instance_id)

    # commands -------------------------------------------------------------------------
    @_guarded
    def enqueue_command(self, command: Command) -> None:
        command = _in_utc(command)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.set(_command_key(command.id), command.model_dump_json())
            if command.state is CommandState.PENDING:
                pipe.zadd(PENDING_KEY, {command.id: _micros(command.created_at)})
            elif command.finished_at is not None:
                pipe.zadd(FINISHED_COMMANDS_KEY, {command.id: _micros(command.finished_at)})
            pipe.xadd(STREAM_KEY, {"id": command.id}, maxlen=STREAM_MAX_LENGTH, approximate=True)
            pipe.execute()

    @_guarded
    def get_command(self, command_id: str) -> Command | None:
        return _load(Command, self._client.get(_command_key(command_id)))

    @_guarded
    def pending_commands(self, limit: int = 100) -> list[Command]:
        if limit <= 0:
            return []
        ids = self._client.zrange(PENDING_KEY, 0, limit - 1)
        if not ids:
            return []
        docs = self._client.mget([_command_key(command_id) for command_id in ids])
        found = (_load(Command, raw) for raw in docs)
        return [command for command in found if command is not None]

    @_guarded
    def finish_command(self, command_id: str, state: CommandState, reason: str | None) -> None:
        state = CommandState(state)
        if state is CommandState.PENDING:
            raise ValueError("a command finishes as applied or rejected, not pending")
        command = _load(Command, self._client.get(_command_key(command_id)))
        if command is None or command.state is not CommandState.PENDING:
            return
        now = utcnow()
        finished = command.model_copy(update={"state": state, "reason": reason, "finished_at": now})
        self._finish_command(
            keys=[PENDING_KEY, FINISHED_COMMANDS_KEY, _command_key(command_id)],
            args=[command_id, finished.model_dump_json(), _micros(now)],
        )

    @_guarded
    def wait_for_commands(self, timeout: float) -> None:
        if self._stream_id is None:
            # Remember the stream's end before looking at pending commands: one enqueued
            # in between is then found by the XREAD below, never lost between the two.
            newest = self._blocking.xrevrange(STREAM_KEY, count=1)
            self._stream_id = newest[0][0] if newest else "0-0"
            if self._client.zcard(PENDING_KEY):
                return
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # BLOCK 0 would wait forever: never ask for less than a millisecond.
            block_ms = max(1, int(min(remaining, MAX_BLOCK_SECONDS) * 1000))
            reply = self._blocking.xread({STREAM_KEY: self._stream_id}, block=block_ms)
            if reply:
                entries = reply[0][1]
                self._stream_id = entries[-1][0]
                return

    # leadership -----------------------------------------------------------------------
    @_guarded
    def acquire_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        lease_ms = max(1, int(lease_seconds * 1000))
        held = self._take_lock(instance_id, lease_ms)
        if not held:
            # A live leader renews every third of the lease, so a lock this close to
            # expiring has a dead or stuck holder. Wait for the expiry rather than for
            # the next poll: a dead leader is then replaced within the lease.
            remaining_ms = int(self._client.pttl(LEADER_KEY))
            if 0 < remaining_ms <= lease_ms * LEADER_EXPIRY_WAIT_FRACTION:
                time.sleep(remaining_ms / 1000 + LEADER_EXPIRY_MARGIN_SECONDS)
                held = self._take_lock(instance_id, lease_ms)
        self._leader_id = instance_id if held else self._leader_id
        return held

    def _take_lock(self, instance_id: str, lease_ms: int) -> bool:
        if self._client.set(LEADER_KEY, instance_id, nx=True, px=lease_ms):
            return True
        # Already ours (or our SET applied but its reply was lost): extend, by token.
        return bool(self._renew(keys=[LEADER_KEY], args=[instance_id, lease_ms]))

    @_guarded
    def renew_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        lease_ms = max(1, int(lease_seconds * 1000))
        held = bool(self._renew(keys=[LEADER_KEY], args=[instance_id, lease_ms]))
        if not held and self._leader_id == instance_id:
            self._leader_id = None
        return held

    @_guarded
    def release_leadership(self, instance_id: str) -> None:
        self._release(keys=[LEADER_KEY], args=[instance_id])
        if self._leader_id == instance_id:
            self._leader_id = None
