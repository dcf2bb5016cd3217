"""Writes run records and catalog changes to the backend in batches, off the job path.

Jobs never wait for history: the runner hands records to :class:`BackendWriter`, which
stores them on its own thread, many per transaction, and keeps retrying while the backend
is away. A record is logged as recorded only once the backend has accepted it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from sundial.backends import Backend
from sundial.models import JobView, Run

log = structlog.get_logger("sundial.writer")

MAX_BATCH = 1_000
RETRY_INITIAL_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0


class BackendWriter:
    """One thread that saves runs and catalog entries, newest version of each wins."""

    def __init__(self, backend: Backend, on_error: Callable[[str], None]) -> None:
        self._backend = backend
        self._on_error = on_error
        self._runs: dict[str, Run] = {}
        self._jobs: dict[str, JobView | None] = {}
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="sundial-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def record(self, run: Run) -> None:
        """Queue a run for saving (replaces a queued older version of the same run)."""
        with self._cond:
            self._runs.pop(run.run_id, None)
            self._runs[run.run_id] = run
            self._cond.notify()

    def save_job(self, view: JobView) -> None:
        with self._cond:
            self._jobs[view.id] = view
            self._cond.notify()

    def delete_job(self, job_id: str) -> None:
        with self._cond:
            self._jobs[job_id] = None
            self._cond.notify()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is stored; False if ``timeout`` passed."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not (self._runs or self._jobs or self._busy), timeout=timeout
            )

    def stop(self, timeout: float) -> bool:
        """Flush, then end the thread. Returns False if records were left unsaved."""
        flushed = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=1)
        if not flushed:
            log.error("writer.unsaved", runs=len(self._runs), jobs=len(self._jobs))
        return flushed

    def _take(self) -> tuple[list[Run], dict[str, JobView | None]]:
        runs = list(self._runs.values())[:MAX_BATCH]
        for run in runs:
            del self._runs[run.run_id]
        jobs, self._jobs = self._jobs, {}
        return runs, jobs

    def _put_back(self, runs: list[Run], jobs: dict[str, JobView | None]) -> None:
        # Anything queued meanwhile is newer than what failed: it wins.
        self._runs = {run.run_id: run for run in runs if run.run_id not in self._runs} | self._runs
        self._jobs = {k: v for k, v in jobs.items() if k not in self._jobs} | self._jobs

    def _loop(self) -> None:
        delay = RETRY_INITIAL_SECONDS
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._runs or self._jobs or self._stopping)
                if self._stopping and not (self._runs or self._jobs):
                    return
                runs, jobs = self._take()
                self._busy = True
            try:
                self._write(runs, jobs)
            except Exception as error:  # a backend bug must not end the writer either
                with self._cond:
                    self._put_back(runs, jobs)
                    self._busy = False
                    self._cond.notify_all()
                    stopping = self._stopping
                log.warning(
                    "writer.retrying",
                    error=str(error),
                    error_type=type(error).__name__,
                    retry_in_s=delay,
                    backlog=len(runs) + len(jobs),
                )
                if stopping:
                    return
                threading.Event().wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = RETRY_INITIAL_SECONDS
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _write(self, runs: list[Run], jobs: dict[str, JobView | None]) -> None:
        try:
            if runs:
                self._backend.save_runs(runs)
            saved = [view for view in jobs.values() if view is not None]
            if saved:
                self._backend.save_jobs(saved)
            deleted = [job_id for job_id, view in jobs.items() if view is None]
            if deleted:
                self._backend.delete_jobs(deleted)
        except Exception:
            self._on_error("write")
            raise
        for run in runs:
            if run.finished_at is not None:
                log.debug("run.recorded", job_id=run.job_id, run_id=run.run_id)
