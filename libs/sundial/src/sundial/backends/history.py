"""The rules of run history, written once for every backend.

A backend stores and fetches; what a stored run becomes when another record of it
arrives, how a job's summary moves with each finished run, which outcomes are failures
and which runs an orphan sweep may interrupt are decided here, so that SQLite, Postgres,
Redis and the test fake cannot drift apart. Each backend applies these rules atomically
(under row locks on SQL, inside a WATCH transaction on Redis).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sundial.models import Outcome, Run, RunSummary

#: outcomes that count as a job failing (a streak of them pages someone)
FAILED_OUTCOMES = frozenset({Outcome.FAILURE, Outcome.TIMEOUT})


def is_final(outcome: Outcome) -> bool:
    """Whether a run with this outcome has ended (everything but ``running``)."""
    return outcome is not Outcome.RUNNING


def started_at(run: Run) -> datetime:
    """When a run started; a missed or skipped run never did, so its fire time."""
    return run.started_at or run.scheduled_time


def ended_at(run: Run) -> datetime:
    """When a run ended; a missed or skipped run may carry no finish time, so its fire time."""
    return run.finished_at or run.scheduled_time


# merging ------------------------------------------------------------------------------
def supersedes(incoming: Run, stored: Run | None) -> bool:
    """Whether ``incoming`` replaces ``stored``, the record of the same run already kept.

    A finished run is never reopened: a ``running`` record that arrives after the final
    one (a batch put back after a failed write, a slow writer) is dropped. Between two
    final records of one run the first stays, unless the newer one is of a later attempt.
    """
    if stored is None or not is_final(stored.outcome):
        return True
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


# orphans ------------------------------------------------------------------------------
def orphan_message(instance_id: str) -> str:
    return f"instance {instance_id} stopped before the run finished"


def interrupt_orphans(candidates: Iterable[Run], live_instance_ids: Collection[str]) -> list[Run]:
    """Interrupted records for the runs still running on instances that are not live.

    ``candidates`` are stored runs; a backend reads them under lock and stores the result
    in the same transaction, so a run that finished meanwhile keeps its real outcome.
    """
    live = set(live_instance_ids)
    return [
        run.finish(Outcome.INTERRUPTED).model_copy(
            update={"error_message": orphan_message(run.instance_id)}
        )
        for run in candidates
        if not is_final(run.outcome) and run.instance_id not in live
    ]


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
