"""The rules of run history, written once for every backend.

A backend stores and fetches; what a stored run becomes when another record of it
arrives, how a job's summary moves with each finished run, which outcomes are failures
and which runs an orphan sweep may interrupt are decided here, so that SQLite, Postgres,
Redis and the test fake cannot drift apart. Each backend applies these rules atomically
(under row locks on SQL, inside a WATCH transaction on Redis).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

from sundial.constants import DEFAULT_QUEUE
from sundial.models import (
    FINAL_OUTCOMES,
    JobOptions,
    Outcome,
    QueueDepth,
    Run,
    RunSummary,
    new_id,
    utcnow,
)

#: outcomes that count as a job failing (a streak of them pages someone)
FAILED_OUTCOMES = frozenset({Outcome.FAILURE, Outcome.TIMEOUT})
#: runs that hold one of their job's ``max_instances`` slots, on any worker
ACTIVE_OUTCOMES = frozenset({Outcome.QUEUED, Outcome.RUNNING})
# A run moves forward only: queued, then running, then one final outcome.
_STAGE = {Outcome.QUEUED: 0, Outcome.RUNNING: 1} | dict.fromkeys(FINAL_OUTCOMES, 2)


def is_final(outcome: Outcome) -> bool:
    """Whether a run with this outcome has ended (it is neither queued nor running)."""
    return _STAGE[outcome] == _STAGE[Outcome.SUCCESS]


def started_at(run: Run) -> datetime:
    """When a run started; a missed or skipped run never did, so its fire time."""
    return run.started_at or run.scheduled_time


def ended_at(run: Run) -> datetime:
    """When a run ended; a missed or skipped run may carry no finish time, so its fire time."""
    return run.finished_at or run.scheduled_time


# merging ------------------------------------------------------------------------------
def supersedes(incoming: Run, stored: Run | None) -> bool:
    """Whether ``incoming`` replaces ``stored``, the record of the same run already kept.

    A run only moves forward (queued, running, final): a finished run is never reopened,
    and a ``running`` or ``queued`` record that arrives after a later stage (a batch put
    back after a failed write, a slow writer) is dropped. Between two final records of
    one run the first stays, unless the newer one is of a later attempt.
    """
    if stored is None:
        return True
    if not is_final(stored.outcome):
        return _STAGE[incoming.outcome] >= _STAGE[stored.outcome]
    return is_final(incoming.outcome) and incoming.attempt > stored.attempt


def newly_finished(incoming: Run, stored: Run | None) -> bool:
    """Whether storing ``incoming`` over ``stored`` ends the run (so it joins its summary).

    A run counts towards its job's summary once: saving the same finished run again
    (a retried batch) must not count it twice.
    """
    return is_final(incoming.outcome) and (stored is None or not is_final(stored.outcome))


def latest(runs: Iterable[Run]) -> dict[str, Run]:
    """The last record of each run in ``runs`` (a batch may hold several versions of one)."""
    return {run.run_id: run for run in runs}


# transitions: each takes a run as stored (read under lock) and says what it becomes -----
def orphan_message(instance_id: str) -> str:
    return f"instance {instance_id} stopped before the run finished"


def interrupt_orphans(candidates: Iterable[Run], live_instance_ids: Collection[str]) -> list[Run]:
    """Interrupted records for the runs still running on instances that are not live.

    ``candidates`` are stored runs; a backend reads them under lock and stores the result
    in the same transaction, so a run that finished meanwhile keeps its real outcome. A
    queued run has no instance running it yet: it is left to :func:`miss_unstarted`.
    """
    live = set(live_instance_ids)
    return [
        run.finish(Outcome.INTERRUPTED).model_copy(
            update={"error_message": orphan_message(run.instance_id)}
        )
        for run in candidates
        if run.outcome is Outcome.RUNNING and run.instance_id not in live
    ]


def start(stored: Run, instance_id: str) -> Run | None:
    """The running record of a queued run taken by ``instance_id``; None unless still queued.

    Only a queued run may start, so a message delivered twice, or a run already missed
    or interrupted, starts nothing: an attempt runs at most once.
    """
    if stored.outcome is not Outcome.QUEUED:
        return None
    return stored.model_copy(
        update={"outcome": Outcome.RUNNING, "started_at": utcnow(), "instance_id": instance_id}
    )


def miss_unstarted(stored: Run, reason: str) -> Run | None:
    """The missed record of a run nobody took; None if it has started or ended meanwhile."""
    if stored.outcome is not Outcome.QUEUED:
        return None
    return stored.model_copy(
        update={"outcome": Outcome.MISSED, "finished_at": utcnow(), "error_message": reason}
    )


def next_attempt(run: Run, options: JobOptions, instance_id: str) -> Run | None:
    """The queued record, made by ``instance_id``, of the attempt after ``run``, if the
    job's retries allow one. It waits out the job's backoff before any worker may take it.
    """
    if run.outcome is Outcome.SUCCESS or run.attempt >= 1 + options.retries:
        return None
    return Run(
        run_id=new_id(),
        job_id=run.job_id,
        scheduled_time=run.scheduled_time,
        attempt=run.attempt + 1,
        manual=run.manual,
        outcome=Outcome.QUEUED,
        instance_id=instance_id,
        queue=options.queue_name,
        due_at=utcnow() + timedelta(seconds=options.retry_delay(run.attempt)),
    )


def due(run: Run) -> datetime:
    """When a queued run may start: its fire time, or later for a retry."""
    return run.due_at or run.scheduled_time


def queue_depths(runs: Iterable[Run]) -> dict[str, QueueDepth]:
    """How many of ``runs`` wait in each queue, and the oldest due time there."""
    waiting: dict[str, list[datetime]] = {}
    for run in runs:
        if run.outcome is Outcome.QUEUED:
            waiting.setdefault(run.queue or DEFAULT_QUEUE, []).append(due(run))
    return {queue: QueueDepth(len(times), min(times)) for queue, times in waiting.items()}


# summaries ----------------------------------------------------------------------------
class StoredSummary(RunSummary):
    """A job's summary as a backend keeps it: with the finish time that orders late runs.

    ``last_success_at`` and ``last_failure_at`` are finish times; ``last_run_at`` is when
    the run that finished last started.
    """

    last_finished_at: datetime | None = None

    def public(self) -> RunSummary:
        return RunSummary.model_validate(self.model_dump(include=set(RunSummary.model_fields)))


def fold(summary: StoredSummary, run: Run) -> StoredSummary:
    """``summary`` after the newly finished ``run``.

    Runs are ordered by when they ended. One that arrives after a run that ended later
    changes only what it can be known to precede: it is not the last run, an older
    success does not end a failure streak that a later failure continued, and an older
    failure does not lengthen the streak of a later success.
    """
    ended = ended_at(run)
    update: dict[str, object] = {}
    if summary.last_finished_at is None or ended >= summary.last_finished_at:
        update.update(
            last_run_at=started_at(run),
            last_outcome=run.outcome,
            last_duration_seconds=run.duration_seconds,
            last_finished_at=ended,
        )
    last_success, last_failure = summary.last_success_at, summary.last_failure_at
    if run.outcome is Outcome.SUCCESS:
        if last_success is None or ended >= last_success:
            update["last_success_at"] = ended
            if last_failure is None or ended >= last_failure:
                update["consecutive_failures"] = 0
    elif run.outcome in FAILED_OUTCOMES:
        if last_success is None or ended > last_success:
            update["consecutive_failures"] = summary.consecutive_failures + 1
        if last_failure is None or ended > last_failure:
            update["last_failure_at"] = ended
    return summary.model_copy(update=update)


def fold_all(
    summaries: dict[str, StoredSummary], finished: Iterable[Run]
) -> dict[str, StoredSummary]:
    """The summaries of the jobs in ``finished`` after folding those runs, in end order.

    ``summaries`` holds what is stored (jobs without a summary yet may be missing);
    only the jobs that changed are returned.
    """
    changed: dict[str, StoredSummary] = {}
    for run in sorted(finished, key=ended_at):
        current = changed.get(run.job_id) or summaries.get(run.job_id)
        changed[run.job_id] = fold(current or StoredSummary(job_id=run.job_id), run)
    return changed
