"""Sundial's shared state in one Redis database (key layout: :mod:`.keys`).

Run history is capped at :data:`MAX_RUNS_PER_JOB` newest runs per job (older ones are
deleted with their documents) and pruned by age with :meth:`RedisBackend.prune`, which
also drops old claims (their TTL expires them anyway if pruning never runs).

Every multi-key change is one MULTI/EXEC transaction. Changes that depend on what is
stored (merging a run's records, folding summaries, moving a job between index sets)
WATCH the keys they read, so two writers cannot interleave a read and a write.

A run saved is as durable as the server's persistence makes it: run Redis with
``appendonly yes`` where history must survive a Redis restart.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from redis.exceptions import WatchError

from sundial.backends import history
from sundial.backends.base import (
    Backend,
    BackendError,
    Dispatched,
    RunCursor,
)
from sundial.backends.jobstore import JobStore
from sundial.backends.redis import keys, runs
from sundial.backends.redis.connection import SOCKET_TIMEOUT_SECONDS, Target, guarded
from sundial.backends.redis.jobstore import BatchingRedisJobStore
from sundial.backends.redis.keys import load
from sundial.backends.redis.leadership import TokenLockLeadership
from sundial.backends.redis.queue import DramatiqQueue
from sundial.models import (
    Command,
    CommandState,
    Instance,
    JobState,
    JobView,
    Outcome,
    QueueDepth,
    Run,
    RunSummary,
    utcnow,
)

if TYPE_CHECKING:
    from redis.client import Pipeline

#: newest runs kept per job; a busy job cannot grow history without bound between prunes
MAX_RUNS_PER_JOB = 10_000
#: a claim only has to outlive every retry of its fire time (misfire grace is minutes)
CLAIM_TTL = timedelta(days=7)
#: the stream only wakes the leader; pending commands live in their own keys
STREAM_MAX_LENGTH = 1_000
#: longest single XREAD BLOCK; longer waits loop, so the socket timeout can stay finite
MAX_BLOCK_SECONDS = 30.0
#: optimistic transactions retried this often before giving up (only the leader writes,
#: so conflicts are rare; a bound keeps a pathological case from spinning forever)
MAX_TRANSACTION_ATTEMPTS = 20
#: after a conflict a transaction waits up to this long, doubling each time (to the cap)
#: and jittered, so that a long read-then-write (a sweep) is not starved by short ones
CONFLICT_BACKOFF_SECONDS = 0.002
CONFLICT_BACKOFF_CAP_SECONDS = 0.25
#: ids read per round trip when a listing has to skip entries
SCAN_CHUNK = 200
#: runs, commands or claims deleted per transaction while pruning or capping
PRUNE_CHUNK = 500

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

_T = TypeVar("_T")
# What a run transaction stores, decided from the runs as they are stored (or None).
_Records = Callable[[dict[str, Run | None]], Iterable[Run]]


class RedisBackend(Backend):
    """Sundial's shared state in Redis (see :mod:`.keys` for the key layout)."""

    kind = "redis"

    def __init__(self, url: str) -> None:
        self.target = Target.parse(url)
        self._client = self.target.client()
        # XREAD BLOCK holds its connection for up to MAX_BLOCK_SECONDS: it gets its own
        # client whose socket timeout outlasts the block, so it is not cut off mid-wait.
        self._blocking = self.target.client(
            socket_timeout=MAX_BLOCK_SECONDS + SOCKET_TIMEOUT_SECONDS
        )
        self._leadership = TokenLockLeadership(self.target)
        self._queue = DramatiqQueue(self.target)
        # Runs this instance sent a second message for: one is enough, a worker that
        # takes either starts the run and the other starts nothing.
        self._resent: set[str] = set()
        self._finish_command = self._client.register_script(_FINISH_COMMAND_LUA)
        self._stream_id: str | None = None

    def __repr__(self) -> str:
        return f"RedisBackend({self.target.describe()})"

    def _transact(self, operation: str, body: Callable[[Pipeline[str]], _T], *watched: str) -> _T:
        """Run ``body`` as WATCH ``watched`` -> read -> MULTI -> EXEC, retried on conflict.

        ``body`` reads through ``self._client``: the WATCH was set before, so any change
        to the keys after the read still aborts the EXEC, whatever connection read them.
        ``body`` must call ``pipe.multi()`` before queuing writes.
        """
        with self._client.pipeline(transaction=True) as pipe:
            for attempt in range(MAX_TRANSACTION_ATTEMPTS):
                try:
                    pipe.watch(*watched)
                    result = body(pipe)
                    pipe.execute()
                except WatchError:
                    pipe.reset()
                    backoff = CONFLICT_BACKOFF_SECONDS * 2**attempt
                    time.sleep(random.uniform(0, min(backoff, CONFLICT_BACKOFF_CAP_SECONDS)))
                    continue
                return result
        raise BackendError(
            f"{self.target.describe()}: {operation} kept conflicting with another writer "
            f"({MAX_TRANSACTION_ATTEMPTS} attempts); is a second leader running?"
        )

    # lifecycle ------------------------------------------------------------------------
    @guarded
    def setup(self) -> None:
        """Nothing to create: Redis makes keys on first write. Checks the connection."""
        self._client.ping()

    def close(self) -> None:
        self._leadership.close()
        self._queue.close()
        self._client.close()
        self._blocking.close()

    @guarded
    def ping(self) -> None:
        self._client.ping()

    def create_jobstore(self) -> JobStore:
        # A client of its own without decode_responses: the job store holds pickles.
        store: JobStore = BatchingRedisJobStore(
            db=self.target.db,
            jobs_key=keys.APS_JOBS,
            run_times_key=keys.APS_RUN_TIMES,
            **self.target.connect_args(),
        )
        return store

    # catalog --------------------------------------------------------------------------
    @staticmethod
    def _job_index_keys(job: JobView) -> list[str]:
        return [keys.job_state(job.state), *(keys.job_tag(tag) for tag in job.options.tags)]

    def _unindex_jobs(self, pipe: Pipeline[str], stored: list[str | None]) -> None:
        for raw in stored:
            previous = load(JobView, raw)
            if previous is not None:
                for key in self._job_index_keys(previous):
                    pipe.zrem(key, previous.id)

    @guarded
    def save_jobs(self, jobs: Sequence[JobView]) -> None:
        latest = {job.id: keys.in_utc(job) for job in jobs}
        if not latest:
            return
        ids = list(latest)

        def body(pipe: Pipeline[str]) -> None:
            stored = self._client.hmget(keys.JOBS, ids)
            pipe.multi()
            self._unindex_jobs(pipe, stored)
            for job in latest.values():
                pipe.hset(keys.JOBS, job.id, job.model_dump_json())
                for key in (keys.JOB_IDS, *self._job_index_keys(job)):
                    pipe.zadd(key, {job.id: 0})

        self._transact("save_jobs", body, keys.JOBS)

    @guarded
    def delete_jobs(self, job_ids: Collection[str]) -> None:
        ids = list(job_ids)
        if not ids:
            return

        def body(pipe: Pipeline[str]) -> None:
            stored = self._client.hmget(keys.JOBS, ids)
            pipe.multi()
            self._unindex_jobs(pipe, stored)
            pipe.hdel(keys.JOBS, *ids)
            pipe.zrem(keys.JOB_IDS, *ids)

        self._transact("delete_jobs", body, keys.JOBS)

    @guarded
    def get_job(self, job_id: str) -> JobView | None:
        return load(JobView, self._client.hget(keys.JOBS, job_id))

    @guarded
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
            index = keys.job_tag(tag)
        elif state is not None:
            index = keys.job_state(state)
        else:
            index = keys.JOB_IDS
        check_state = state if tag is not None else None
        chunk = limit if check_state is None else max(limit, SCAN_CHUNK)
        start = "-" if after is None else f"({after}"
        found: list[JobView] = []
        while len(found) < limit:
            ids = self._client.zrangebylex(index, start, "+", start=0, num=chunk)
            if not ids:
                break
            for raw in self._client.hmget(keys.JOBS, ids):
                job = load(JobView, raw)
                if job is not None and (check_state is None or job.state is check_state):
                    found.append(job)
            if len(ids) < chunk:
                break
            start = f"({ids[-1]}"
        return found[:limit]

    @guarded
    def count_jobs(self) -> dict[JobState, int]:
        with self._client.pipeline(transaction=False) as pipe:
            for state in JobState:
                pipe.zcard(keys.job_state(state))
            counts = pipe.execute()
        return {state: int(count) for state, count in zip(JobState, counts, strict=True)}

    # runs -----------------------------------------------------------------------------
    @guarded
    def claim_runs(
        self, claims: Sequence[tuple[str, datetime]], instance_id: str
    ) -> set[tuple[str, datetime]]:
        wanted = {keys.claim(job_id, when): (job_id, when) for job_id, when in claims}
        if not wanted:
            return set()
        # A nonce makes a retried transaction (reply lost, commands applied) recognise
        # its own claims instead of reporting them taken, which would drop the runs.
        token = f"{instance_id}:{uuid.uuid4().hex}"
        with self._client.pipeline(transaction=True) as pipe:
            for key in wanted:
                pipe.set(key, token, nx=True, ex=CLAIM_TTL)
                pipe.get(key)
            # Indexed by fire time so that prune() can drop claims before their TTL.
            pipe.zadd(keys.CLAIMS, {key: keys.micros(when) for key, (_, when) in wanted.items()})
            replies = pipe.execute()
        # Each SET NX is followed by a GET of its key: the claim is ours if that reads
        # our token, whether this SET or the lost-reply attempt before it wrote it.
        holders = replies[1:-1:2]
        return {
            claim for claim, holder in zip(wanted.values(), holders, strict=True) if holder == token
        }

    @guarded
    def save_runs(self, runs: Sequence[Run]) -> None:
        incoming = [keys.in_utc(run) for run in history.latest(runs).values()]
        if incoming:
            self._store_runs([run.run_id for run in incoming], lambda stored: incoming)

    def _store_runs(self, run_ids: list[str], records: _Records) -> list[Run]:
        """Store what ``records`` makes of the runs as stored, merged by the history rules.

        One transaction watching the runs and the summaries: the records are decided
        from what is stored at the moment of writing, and a run that finishes here is
        folded into its summary exactly once.
        """
        doc_keys = [keys.run(run_id) for run_id in run_ids]

        def body(pipe: Pipeline[str]) -> list[Run]:
            stored = dict(
                zip(run_ids, (load(Run, raw) for raw in self._client.mget(doc_keys)), strict=True)
            )
            writes = [
                run for run in records(stored) if history.supersedes(run, stored.get(run.run_id))
            ]
            finished = [r for r in writes if history.newly_finished(r, stored.get(r.run_id))]
            summaries = self._folded(finished)
            pipe.multi()
            for run in writes:
                old = stored.get(run.run_id)
                if old is not None:
                    runs.unindex(pipe, old)
                runs.index(pipe, run)
            for job_id, summary in summaries.items():
                pipe.hset(keys.SUMMARIES, job_id, summary.model_dump_json())
            return writes

        written = self._transact("save_runs", body, keys.SUMMARIES, *doc_keys)
        self._cap_history({run.job_id for run in written})
        return written

    def _folded(self, finished: list[Run]) -> dict[str, history.StoredSummary]:
        """The summaries of the jobs of ``finished`` after folding those runs in."""
        if not finished:
            return {}
        job_ids = sorted({run.job_id for run in finished})
        stored = {
            job_id: summary
            for job_id, raw in zip(
                job_ids, self._client.hmget(keys.SUMMARIES, job_ids), strict=True
            )
            if (summary := load(history.StoredSummary, raw)) is not None
        }
        return history.fold_all(stored, finished)

    def _cap_history(self, job_ids: Iterable[str]) -> None:
        """Delete the oldest runs of jobs that have more than MAX_RUNS_PER_JOB."""
        jobs = sorted(job_ids)
        with self._client.pipeline(transaction=False) as pipe:
            for job_id in jobs:
                pipe.zcard(keys.job_runs(job_id))
            sizes = pipe.execute()
        for job_id, size in zip(jobs, sizes, strict=True):
            excess = int(size) - MAX_RUNS_PER_JOB
            while excess > 0:
                oldest = self._client.zrange(keys.job_runs(job_id), 0, min(excess, PRUNE_CHUNK) - 1)
                if not oldest:
                    break
                self._delete_runs(oldest, keep=lambda run: False)
                excess -= len(oldest)

    def _delete_runs(self, run_ids: list[str], *, keep: Callable[[Run], bool]) -> tuple[int, int]:
        """Delete runs, with their index entries, unless ``keep`` them.

        Returns (deleted, kept); ``keep`` sees each run as stored, inside the WATCH.
        """
        doc_keys = [keys.run(run_id) for run_id in run_ids]

        def body(pipe: Pipeline[str]) -> tuple[int, int]:
            docs = self._client.mget(doc_keys)
            pipe.multi()
            deleted = kept = 0
            for run_id, raw in zip(run_ids, docs, strict=True):
                run = load(Run, raw)
                if run is None:
                    # An index entry without its document: drop what can be found.
                    pipe.zrem(keys.RUNS, run_id)
                    pipe.srem(keys.RUNNING, run_id)
                elif keep(run):
                    kept += 1
                else:
                    runs.unindex(pipe, run)
                    pipe.delete(keys.run(run_id))
                    deleted += 1
            return deleted, kept

        return self._transact("delete runs", body, *doc_keys)

    @guarded
    def get_run(self, run_id: str) -> Run | None:
        return load(Run, self._client.get(keys.run(run_id)))

    @guarded
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
            index = (
                keys.job_runs(job_id)
                if outcome is None
                else keys.job_runs_by_outcome(job_id, outcome)
            )
        else:
            index = keys.RUNS if outcome is None else keys.runs_by_outcome(outcome)
        floor = "-inf" if since is None else keys.micros(since)
        bound = None if before is None else (keys.micros(before.scheduled_time), before.run_id)
        found: list[Run] = []
        while len(found) < limit:
            page = runs.older_ids(self._client, index, floor, bound, limit - len(found))
            if not page:
                break
            for raw in self._client.mget([keys.run(run_id) for run_id, _ in page]):
                run = load(Run, raw)
                # Re-check filters: a document is the truth if an index entry is stale.
                if run is not None and (outcome is None or run.outcome is outcome):
                    found.append(run)
            bound = (page[-1][1], page[-1][0])
        return found

    @guarded
    def last_run(
        self, job_id: str, *, outcome: Outcome | None = None, since: datetime | None = None
    ) -> Run | None:
        index = (
            keys.job_runs_by_start(job_id)
            if outcome is None
            else keys.job_runs_by_outcome_and_start(job_id, outcome)
        )
        floor: int | str = "-inf" if since is None else keys.micros(since)
        offset = 0
        while True:
            # Usually the first id answers; reading a few covers index entries left
            # behind by a deleted document.
            ids = self._client.zrevrangebyscore(index, "+inf", floor, start=offset, num=10)
            if not ids:
                return None
            for raw in self._client.mget([keys.run(run_id) for run_id in ids]):
                run = load(Run, raw)
                if run is not None and (outcome is None or run.outcome is outcome):
                    return run
            offset += len(ids)

    @guarded
    def run_summaries(self, job_ids: Collection[str] | None = None) -> dict[str, RunSummary]:
        if job_ids is None:
            raw_by_job: dict[str, str | None] = dict(self._client.hgetall(keys.SUMMARIES))
        else:
            wanted = sorted(set(job_ids))
            if not wanted:
                return {}
            values = self._client.hmget(keys.SUMMARIES, wanted)
            raw_by_job = dict(zip(wanted, values, strict=True))
        return {
            job_id: stored.public()
            for job_id, raw in raw_by_job.items()
            if (stored := load(history.StoredSummary, raw)) is not None
        }

    @guarded
    def interrupt_orphaned_runs(self, live_instance_ids: Collection[str]) -> list[Run]:
        running_ids = sorted(self._client.smembers(keys.RUNNING))
        if not running_ids:
            return []
        docs = self._client.mget([keys.run(run_id) for run_id in running_ids])
        stored = dict(zip(running_ids, (load(Run, raw) for raw in docs), strict=True))
        # Members whose run has finished, or whose document is gone, linger in the set.
        stale = [i for i, run in stored.items() if run is None or history.is_final(run.outcome)]
        if stale:
            self._client.srem(keys.RUNNING, *stale)

        def interrupted(current: dict[str, Run | None]) -> list[Run]:
            present = (run for run in current.values() if run is not None)
            return history.interrupt_orphans(present, live_instance_ids)

        candidates = [run_id for run_id in running_ids if run_id not in stale]
        return self._store_runs(candidates, interrupted) if candidates else []

    @guarded
    def update_runs(
        self, run_ids: Collection[str], change: Callable[[Run], Run | None]
    ) -> list[Run]:
        def changed(stored: dict[str, Run | None]) -> list[Run]:
            return [new for run in stored.values() if run and (new := change(run))]

        return self._store_runs(sorted(run_ids), changed) if run_ids else []

    @guarded
    def count_active(self, job_ids: Collection[str]) -> dict[str, int]:
        jobs = sorted(job_ids)
        with self._client.pipeline(transaction=False) as pipe:
            for job_id in jobs:
                for outcome in sorted(history.ACTIVE_OUTCOMES):
                    pipe.zcard(keys.job_runs_by_outcome(job_id, outcome))
            sizes = iter(pipe.execute())
        per_job = len(history.ACTIVE_OUTCOMES)
        return {job_id: sum(int(next(sizes)) for _ in range(per_job)) for job_id in jobs}

    @guarded
    def queued_by_queue(self) -> dict[str, QueueDepth]:
        ids = self._client.zrange(keys.runs_by_outcome(Outcome.QUEUED), 0, -1)
        docs = (
            self._client.mget([keys.run(run_id) for run_id in ids[i : i + SCAN_CHUNK]])
            for i in range(0, len(ids), SCAN_CHUNK)
        )
        return history.queue_depths(run for page in docs for raw in page if (run := load(Run, raw)))

    def claim_and_queue(
        self, runs: Sequence[Run], instance_id: str, limits: Mapping[str, int]
    ) -> Dispatched:
        if not runs:
            return Dispatched()
        won = self.claim_runs([(run.job_id, run.scheduled_time) for run in runs], instance_id)
        claimed = [run for run in runs if (run.job_id, run.scheduled_time) in won]
        # Only the leader queues runs, so the count cannot grow between here and the
        # write; workers only lower it.
        active = self.count_active({run.job_id for run in claimed})
        dispatched = Dispatched()
        for run in claimed:
            limit = limits.get(run.job_id)
            if limit is not None and active[run.job_id] >= limit:
                dispatched.over_limit.append(run)
            else:
                active[run.job_id] += 1
                dispatched.queued.append(run)
        self.queue_runs(dispatched.queued)
        return dispatched

    @guarded
    def queue_runs(self, runs: Sequence[Run]) -> None:
        if not runs:
            return
        incoming = [keys.in_utc(run) for run in runs]
        # The record first: a crash before the message leaves a queued run that
        # reconcile_queued sends again, never a message without its run.
        queued = self._store_runs([run.run_id for run in incoming], lambda stored: incoming)
        self._queue.enqueue(queued)

    @guarded
    def reconcile_queued(self, due_before: datetime) -> int:
        ids = self._client.zrange(keys.runs_by_outcome(Outcome.QUEUED), 0, -1)
        unsent = [run_id for run_id in ids if run_id not in self._resent]
        waiting = [
            run
            for raw in (
                self._client.mget([keys.run(run_id) for run_id in unsent]) if unsent else []
            )
            if (run := load(Run, raw)) is not None
            and run.outcome is Outcome.QUEUED
            and history.due(run) < due_before
        ]
        self._queue.enqueue(waiting)
        self._resent.update(run.run_id for run in waiting)
        return len(waiting)

    def run_queue(self) -> DramatiqQueue:
        return self._queue

    @guarded
    def prune(self, older_than: datetime) -> int:
        cutoff = keys.utc(older_than)
        below = f"({keys.micros(cutoff)}"

        def keep(run: Run) -> bool:
            # A run is as old as its end: one still running, or that ended after the
            # cut-off though scheduled before it, stays.
            return not history.is_final(run.outcome) or history.ended_at(run) >= cutoff

        deleted = kept = 0
        while True:
            # Runs end after their fire time, so every candidate is scheduled before the
            # cut-off; step over the ones kept instead of reading them again.
            ids = self._client.zrangebyscore(keys.RUNS, "-inf", below, start=kept, num=PRUNE_CHUNK)
            if not ids:
                break
            removed, skipped = self._delete_runs(ids, keep=keep)
            deleted += removed
            kept += skipped
        self._drop_older(keys.FINISHED_COMMANDS, below, keys.command)
        self._drop_older(keys.CLAIMS, below, lambda key: key)
        return deleted

    def _drop_older(self, index: str, below: str, doc_key: Callable[[str], str]) -> None:
        """Delete the members of ``index`` scored below ``below``, with their documents."""
        while members := self._client.zrangebyscore(index, "-inf", below, start=0, num=PRUNE_CHUNK):
            with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(*(doc_key(member) for member in members))
                pipe.zrem(index, *members)
                pipe.execute()

    # instances ------------------------------------------------------------------------
    @guarded
    def heartbeat(self, instance: Instance) -> None:
        seen = keys.in_utc(instance).model_copy(update={"last_seen": utcnow()})
        self._client.hset(keys.INSTANCES, instance.id, seen.model_dump_json())

    @guarded
    def list_instances(self) -> list[Instance]:
        found = (load(Instance, raw) for raw in self._client.hvals(keys.INSTANCES))
        return sorted((instance for instance in found if instance), key=lambda i: i.id)

    @guarded
    def remove_instance(self, instance_id: str) -> None:
        self._client.hdel(keys.INSTANCES, instance_id)

    # commands -------------------------------------------------------------------------
    @guarded
    def enqueue_command(self, command: Command) -> None:
        command = keys.in_utc(command)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.set(keys.command(command.id), command.model_dump_json())
            if command.state is CommandState.PENDING:
                pipe.zadd(keys.PENDING_COMMANDS, {command.id: keys.micros(command.created_at)})
            elif command.finished_at is not None:
                pipe.zadd(keys.FINISHED_COMMANDS, {command.id: keys.micros(command.finished_at)})
            pipe.xadd(
                keys.COMMAND_STREAM, {"id": command.id}, maxlen=STREAM_MAX_LENGTH, approximate=True
            )
            pipe.execute()

    @guarded
    def get_command(self, command_id: str) -> Command | None:
        return load(Command, self._client.get(keys.command(command_id)))

    @guarded
    def pending_commands(self, limit: int = 100) -> list[Command]:
        if limit <= 0:
            return []
        ids = self._client.zrange(keys.PENDING_COMMANDS, 0, limit - 1)
        if not ids:
            return []
        docs = self._client.mget([keys.command(command_id) for command_id in ids])
        found = (load(Command, raw) for raw in docs)
        return [command for command in found if command is not None]

    @guarded
    def finish_command(self, command_id: str, state: CommandState, reason: str | None) -> None:
        state = CommandState(state)
        if state is CommandState.PENDING:
            raise ValueError("a command finishes as applied or rejected, not pending")
        command = load(Command, self._client.get(keys.command(command_id)))
        if command is None or command.state is not CommandState.PENDING:
            return
        now = utcnow()
        finished = command.model_copy(update={"state": state, "reason": reason, "finished_at": now})
        self._finish_command(
            keys=[keys.PENDING_COMMANDS, keys.FINISHED_COMMANDS, keys.command(command_id)],
            args=[command_id, finished.model_dump_json(), keys.micros(now)],
        )

    @guarded
    def wait_for_commands(self, timeout: float) -> None:
        if self._stream_id is None:
            # Remember the stream's end before looking at pending commands: one enqueued
            # in between is then found by the XREAD below, never lost between the two.
            newest = self._blocking.xrevrange(keys.COMMAND_STREAM, count=1)
            self._stream_id = newest[0][0] if newest else "0-0"
            if self._client.zcard(keys.PENDING_COMMANDS):
                return
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # BLOCK 0 would wait forever: never ask for less than a millisecond.
            block_ms = max(1, int(min(remaining, MAX_BLOCK_SECONDS) * 1000))
            reply = self._blocking.xread({keys.COMMAND_STREAM: self._stream_id}, block=block_ms)
            if reply:
                entries = reply[0][1]
                self._stream_id = entries[-1][0]
                return

    # leadership -----------------------------------------------------------------------
    def acquire_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        return self._leadership.acquire(instance_id, lease_seconds)

    def renew_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        return self._leadership.renew(instance_id, lease_seconds)

    def release_leadership(self, instance_id: str) -> None:
        self._leadership.release(instance_id)
