"""An in-memory Backend for unit tests (real backends are tested in integration/)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore

from sundial.backends import Backend, BackendError, RunCursor, history
from sundial.backends.base import Dispatched
from sundial.backends.jobstore import JobStore, StoredSchedule
from sundial.backends.queue import RunMessage
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


class FakeJobStore(MemoryJobStore):  # type: ignore[misc]
    """APScheduler's memory store with the batched write the scheduler expects."""

    def update_jobs(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.update_job(job)

    def iter_schedules(self) -> Iterator[StoredSchedule]:
        for job in self.get_all_jobs():
            yield StoredSchedule(job.id, job.next_run_time, job.trigger)


class FakeBackend(Backend):
    """Dicts behind a lock; ``down = True`` makes every call raise BackendError."""

    kind = "fake"

    def __init__(self) -> None:
        self.jobs: dict[str, JobView] = {}
        self.runs: dict[str, Run] = {}
        self.summaries: dict[str, history.StoredSummary] = {}
        self.messages: list[RunMessage] = []
        self.commands: dict[str, Command] = {}
        self.instances: dict[str, Instance] = {}
        self.claims: set[tuple[str, datetime]] = set()
        self.leader: str | None = None
        self.down = False
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise BackendError("fake backend is down")

    def setup(self) -> None:
        self._check("setup")

    def close(self) -> None:
        pass

    def ping(self) -> None:
        self._check("ping")

    def create_jobstore(self) -> JobStore:
        store: JobStore = FakeJobStore()
        return store

    def save_jobs(self, jobs: Sequence[JobView]) -> None:
        self._check("save_jobs")
        with self._lock:
            self.jobs.update({job.id: job for job in jobs})

    def delete_jobs(self, job_ids: Collection[str]) -> None:
        self._check("delete_jobs")
        with self._lock:
            for job_id in job_ids:
                self.jobs.pop(job_id, None)

    def get_job(self, job_id: str) -> JobView | None:
        self._check("get_job")
        return self.jobs.get(job_id)

    def list_jobs(
        self,
        *,
        state: JobState | None = None,
        tag: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[JobView]:
        self._check("list_jobs")
        found = [
            job
            for job_id, job in sorted(self.jobs.items())
            if (state is None or job.state == state)
            and (tag is None or tag in job.options.tags)
            and (after is None or job_id > after)
        ]
        return found[:limit]

    def count_jobs(self) -> dict[JobState, int]:
        self._check("count_jobs")
        counts = dict.fromkeys(JobState, 0)
        for job in self.jobs.values():
            counts[job.state] += 1
        return counts

    def claim_runs(
        self, claims: Sequence[tuple[str, datetime]], instance_id: str
    ) -> set[tuple[str, datetime]]:
        self._check("claim_runs")
        won: set[tuple[str, datetime]] = set()
        with self._lock:
            for claim in claims:
                if claim not in self.claims:
                    self.claims.add(claim)
                    won.add(claim)
        return won

    def save_runs(self, runs: Sequence[Run]) -> None:
        self._check("save_runs")
        with self._lock:
            self._store(history.latest(runs).values())

    def _store(self, incoming: Iterable[Run]) -> list[Run]:
        writes = [run for run in incoming if history.supersedes(run, self.runs.get(run.run_id))]
        finished = [run for run in writes if history.newly_finished(run, self.runs.get(run.run_id))]
        self.runs.update({run.run_id: run for run in writes})
        self.summaries.update(history.fold_all(self.summaries, finished))
        return writes

    def get_run(self, run_id: str) -> Run | None:
        self._check("get_run")
        return self.runs.get(run_id)

    def list_runs(
        self,
        *,
        job_id: str | None = None,
        outcome: Outcome | None = None,
        since: datetime | None = None,
        before: RunCursor | None = None,
        limit: int = 100,
    ) -> list[Run]:
        self._check("list_runs")
        runs = sorted(self.runs.values(), key=lambda r: (r.scheduled_time, r.run_id), reverse=True)
        return [
            run
            for run in runs
            if (job_id is None or run.job_id == job_id)
            and (outcome is None or run.outcome == outcome)
            and (since is None or run.scheduled_time >= since)
            and (
                before is None
                or (run.scheduled_time, run.run_id) < (before.scheduled_time, before.run_id)
            )
        ][:limit]

    def last_run(
        self, job_id: str, *, outcome: Outcome | None = None, since: datetime | None = None
    ) -> Run | None:
        self._check("last_run")
        found = [
            run
            for run in self.runs.values()
            if run.job_id == job_id
            and (outcome is None or run.outcome == outcome)
            and (since is None or history.started_at(run) >= since)
        ]
        return max(found, key=lambda run: (history.started_at(run), run.run_id), default=None)

    def run_summaries(self, job_ids: Collection[str] | None = None) -> dict[str, RunSummary]:
        self._check("run_summaries")
        return {
            job_id: summary.public()
            for job_id, summary in self.summaries.items()
            if job_ids is None or job_id in job_ids
        }

    def interrupt_orphaned_runs(self, live_instance_ids: Collection[str]) -> list[Run]:
        self._check("interrupt_orphaned_runs")
        with self._lock:
            orphans = history.interrupt_orphans(list(self.runs.values()), live_instance_ids)
            return self._store(orphans)

    def update_runs(
        self, run_ids: Collection[str], change: Callable[[Run], Run | None]
    ) -> list[Run]:
        self._check("update_runs")
        with self._lock:
            stored = [self.runs[run_id] for run_id in run_ids if run_id in self.runs]
            return self._store([new for run in stored if (new := change(run)) is not None])

    def count_active(self, job_ids: Collection[str]) -> dict[str, int]:
        self._check("count_active")
        counts = dict.fromkeys(job_ids, 0)
        for run in self.runs.values():
            if run.job_id in counts and run.outcome in history.ACTIVE_OUTCOMES:
                counts[run.job_id] += 1
        return counts

    def queued_by_queue(self) -> dict[str, QueueDepth]:
        self._check("queued_by_queue")
        return history.queue_depths(self.runs.values())

    def claim_and_queue(
        self, runs: Sequence[Run], instance_id: str, limits: Mapping[str, int]
    ) -> Dispatched:
        won = self.claim_runs([(run.job_id, run.scheduled_time) for run in runs], instance_id)
        claimed = [run for run in runs if (run.job_id, run.scheduled_time) in won]
        active = self.count_active({run.job_id for run in claimed})
        done = Dispatched()
        for run in claimed:
            if active[run.job_id] >= limits.get(run.job_id, len(runs) + 1):
                done.over_limit.append(run)
            else:
                active[run.job_id] += 1
                done.queued.append(run)
        self.queue_runs(done.queued)
        return done

    def queue_runs(self, runs: Sequence[Run]) -> None:
        self._check("queue_runs")
        with self._lock:
            self._store(runs)
            self.messages.extend(RunMessage.of(run) for run in runs)

    def prune(self, older_than: datetime) -> int:
        self._check("prune")
        with self._lock:
            old = [
                run_id
                for run_id, run in self.runs.items()
                if history.is_final(run.outcome) and history.ended_at(run) < older_than
            ]
            for run_id in old:
                del self.runs[run_id]
            return len(old)

    def heartbeat(self, instance: Instance) -> None:
        self._check("heartbeat")
        self.instances[instance.id] = instance

    def list_instances(self) -> list[Instance]:
        self._check("list_instances")
        return list(self.instances.values())

    def remove_instance(self, instance_id: str) -> None:
        self.instances.pop(instance_id, None)

    def enqueue_command(self, command: Command) -> None:
        self._check("enqueue_command")
        self.commands[command.id] = command

    def get_command(self, command_id: str) -> Command | None:
        self._check("get_command")
        return self.commands.get(command_id)

    def pending_commands(self, limit: int = 100) -> list[Command]:
        self._check("pending_commands")
        pending = [c for c in self.commands.values() if c.state is CommandState.PENDING]
        return sorted(pending, key=lambda c: c.created_at)[:limit]

    def finish_command(self, command_id: str, state: CommandState, reason: str | None) -> None:
        self._check("finish_command")
        with self._lock:
            command = self.commands[command_id]
            self.commands[command_id] = command.model_copy(
                update={"state": state, "reason": reason, "finished_at": utcnow()}
            )

    def wait_for_commands(self, timeout: float) -> None:
        pass

    def acquire_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        if self.leader in (None, instance_id):
            self.leader = instance_id
            return True
        return False

    def renew_leadership(self, instance_id: str, lease_seconds: float) -> bool:
        return self.leader == instance_id

    def release_leadership(self, instance_id: str) -> None:
        if self.leader == instance_id:
            self.leader = None
