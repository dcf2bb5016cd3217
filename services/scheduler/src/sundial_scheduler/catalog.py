"""The job catalog the leader keeps: the JSON view of every job, in step with the store.

The API never reads APScheduler's job store (its rows are pickles that import job code);
it reads this catalog. The leader owns it: it reconciles the code's definitions with the
store at the start of each term (:func:`plan_sync`), then records every change the
engine or a command makes, through the batched writer.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from sundial.backends import Backend
from sundial.jobs import JobDefinition
from sundial.metrics import SchedulerMetrics
from sundial.models import JobSource, JobState, JobView, utcnow
from sundial_scheduler.writer import BackendWriter

log = structlog.get_logger("sundial.catalog")

#: fields of a catalog entry that are immutable and often equal between jobs
_SHARED_FIELDS = ("func", "trigger", "trigger_text", "options", "fingerprint", "source")


def with_next_run(view: JobView, next_run_time: datetime | None) -> JobView:
    """``view`` with its next run time, and the state that follows from it (``view``
    itself when it already says so)."""
    state = JobState.PAUSED if next_run_time is None else JobState.SCHEDULED
    if view.next_run_time == next_run_time and view.state is state:
        return view
    return view.model_copy(update={"next_run_time": next_run_time, "state": state})


@dataclass(frozen=True)
class SyncPlan:
    """How the store and the catalog must change to match the code.

    Code defines jobs; changes made at run time through the API (pause, reschedule,
    options) persist until the code's definition of that job changes; jobs created
    through the API persist until removed.
    """

    #: definitions to (re)add to the store: new in code, or changed since stored
    add: list[JobDefinition] = field(default_factory=list)
    #: stored jobs to remove: defined neither in code nor through the API
    remove: list[str] = field(default_factory=list)
    #: stored jobs kept as they are, with the catalog entries that describe them
    keep: dict[str, JobView] = field(default_factory=dict)


def plan_sync(
    definitions: Mapping[str, JobDefinition],
    catalog: Mapping[str, JobView],
    stored: Collection[str],
) -> SyncPlan:
    """Reconcile code (``definitions``), the ``catalog`` and the ids in the job store."""
    plan = SyncPlan()
    for job_id, definition in definitions.items():
        kept = catalog.get(job_id)
        if (
            job_id in stored
            and kept is not None
            and kept.source is JobSource.CODE
            and kept.fingerprint == definition.fingerprint()
        ):
            plan.keep[job_id] = kept
        else:
            plan.add.append(definition)
    for job_id in stored:
        if job_id in definitions:
            continue
        kept = catalog.get(job_id)
        if kept is not None and kept.source is JobSource.API:
            plan.keep[job_id] = kept
        else:
            plan.remove.append(job_id)
    return plan


class Catalog:
    """The leader's catalog entries, and their metrics; empty while not leading."""

    def __init__(self, backend: Backend, writer: BackendWriter, metrics: SchedulerMetrics) -> None:
        self._backend = backend
        self._writer = writer
        self._metrics = metrics
        self._views: dict[str, JobView] = {}
        #: frozen parts (options, triggers, texts) that many jobs share, kept once
        self._shared: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def view(self, job_id: str) -> JobView | None:
        with self._lock:
            return self._views.get(job_id)

    def views(self) -> list[JobView]:
        with self._lock:
            return list(self._views.values())

    def publish(self, views: dict[str, JobView], stored: Mapping[str, JobView]) -> None:
        """Take ``views`` as the catalog; write what differs from ``stored``; make metrics.

        A view that is the stored entry itself is already compact (see :meth:`compact`).

        Blocking (it reads run summaries to seed the last success and failure metrics).
        """
        compact = {
            job_id: view if stored.get(job_id) is view else self.compact(view)
            for job_id, view in views.items()
        }
        with self._lock:
            self._views = compact
        for job_id in stored.keys() - views.keys():
            self._writer.delete_job(job_id)
        changed = [
            view
            for view in views.values()
            if (was := stored.get(view.id)) is not view and was != view
        ]
        for view in changed:
            self._writer.save_job(view)
        for view in views.values():
            self._metrics.job_known(view)
        for summary in self._backend.run_summaries(list(views)).values():
            self._metrics.restore_last(
                summary.job_id,
                summary.last_success_at.timestamp() if summary.last_success_at else None,
                summary.last_failure_at.timestamp() if summary.last_failure_at else None,
            )
        log.info("jobs.synced", jobs=len(views), changed=len(changed))

    def compact(self, view: JobView) -> JobView:
        """``view``, its frozen parts replaced by equal ones another job already holds.

        A leader may hold a hundred thousand jobs, most of them with default options and
        one of a few triggers and functions; each of those is then kept once.
        """
        share = self._shared.setdefault
        compact = view.model_copy(
            update={
                name: share(value, value)
                for name in _SHARED_FIELDS
                if (value := getattr(view, name)) is not None
            }
        )
        # The set of the fields given is the same for nearly every entry, and alone
        # weighs more than the rest of one; entries are never assigned to, so it can be
        # shared too.
        given = frozenset(compact.model_fields_set)
        object.__setattr__(compact, "__pydantic_fields_set__", share(given, set(given)))
        return compact

    def replace(self, view: JobView) -> None:
        """Store a changed catalog entry (from a command)."""
        view = self.compact(view.model_copy(update={"updated_at": utcnow()}))
        with self._lock:
            self._views[view.id] = view
        self._writer.save_job(view)
        self._metrics.job_known(view)

    def job_changed(self, job_id: str, next_run_time: datetime | None, removed: bool) -> None:
        """The engine stored a job's new next run time, or removed it (store callback)."""
        with self._lock:
            view = self._views.get(job_id)
            if view is None:
                return
            if removed:
                del self._views[job_id]
            else:
                view = with_next_run(view, next_run_time)
                self._views[job_id] = view
        if removed:
            self._writer.delete_job(job_id)
            self._metrics.job_removed(job_id)
        else:
            self._writer.save_job(view)
            self._metrics.set_next_run(job_id, next_run_time.timestamp() if next_run_time else None)

    def clear(self) -> None:
        """Forget every entry (a term ended); the stored catalog stays for the next leader."""
        with self._lock:
            self._views = {}
            self._shared = {}
        self._metrics.forget_jobs()
