"""100,000 stored jobs: filling both stores fast, and reading them through each side.

Sundial's API reads the JSON catalog; plain APScheduler reads its job store, unpickling
every job for ``get_jobs()``. Both are filled straight from prepared rows (``save_jobs``
in batches, pickled job states written into the store's table or hash), because one
``add_job`` per job would take minutes. The jobs are what the API's ``POST /jobs``
makes (source ``api``), due once a year, so that nothing fires while they are measured.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi.testclient import TestClient

from benchmarks import probe
from benchmarks.stats import percentile
from benchmarks.stores import fill_store, job_states, plain_store
from benchmarks.worker import job_id
from sundial.backends import open_backend
from sundial.config import Settings
from sundial.jobs import cron, func_ref
from sundial.models import JobSource, JobView, utcnow
from sundial.triggers import CronSpec, expected_interval
from sundial_api.cursors import encode_job_cursor
from sundial_api.main import create_app

CATALOG_BATCH = 1_000
YEARLY = "0 3 1 1 *"
PAGE_SIZE = 100
#: APScheduler's defaults as Sundial's settings set them
ENGINE_OPTIONS = {"misfire_grace_time": 60, "coalesce": False, "max_instances": 3}


@dataclass(frozen=True)
class Timings:
    p50_s: float | None
    p99_s: float | None
    count: int

    @classmethod
    def of(cls, samples: list[float]) -> Timings:
        return cls(percentile(samples, 0.5), percentile(samples, 0.99), len(samples))


def fill(url: str, count: int) -> dict[str, float]:
    """``count`` jobs in Sundial's catalog and in the APScheduler store; seconds taken."""
    spec = CronSpec.model_validate(dict(cron(YEARLY)))
    trigger = spec.build()
    now = utcnow()
    next_run = trigger.get_next_fire_time(None, now)
    assert next_run is not None, f"{YEARLY!r} always fires again"
    template = JobView(
        id="template",
        name="template",
        func=func_ref(probe.idle),
        trigger=spec,
        trigger_text=spec.describe(),
        next_run_time=next_run,
        source=JobSource.API,
        expected_interval_seconds=expected_interval(spec, now),
    )
    ids = [job_id(index) for index in range(count)]
    backend = open_backend(url)
    begun = time.perf_counter()
    try:
        backend.setup()
        for first in range(0, count, CATALOG_BATCH):
            chunk = ids[first : first + CATALOG_BATCH]
            backend.save_jobs([template.model_copy(update={"id": i, "name": i}) for i in chunk])
    finally:
        backend.close()
    catalog_s = time.perf_counter() - begun
    begun = time.perf_counter()
    states = job_states(
        ids, func=probe.idle, trigger=trigger, next_run_time=next_run, options=ENGINE_OPTIONS
    )
    fill_store(url, states, next_run)
    return {"catalog_s": catalog_s, "store_s": time.perf_counter() - begun}


def _timed(call: Callable[[], Any], times: int) -> list[float]:
    samples = []
    for _ in range(times):
        begun = time.perf_counter()
        call()
        samples.append(time.perf_counter() - begun)
    return samples


def sundial_api(url: str, count: int, repeats: int, rng: random.Random) -> dict[str, Timings]:
    """Sundial's API app (in-process, real routes and backend): a page of 100, one job."""
    app = create_app(Settings(backend_url=url, log_format="json"))
    with TestClient(app) as client:

        def get(path: str) -> dict[str, Any]:
            response = client.get(path)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

        _timed(lambda: get(f"/api/v1/jobs?limit={PAGE_SIZE}"), 5)  # warm up
        first = _timed(lambda: get(f"/api/v1/jobs?limit={PAGE_SIZE}"), repeats)
        # ...and pages deep in the catalog, as a client paging on with the cursor reads them
        deep = _timed(
            lambda: get(f"/api/v1/jobs?limit={PAGE_SIZE}&cursor={_random_cursor(count, rng)}"),
            repeats,
        )
        one = _timed(lambda: get(f"/api/v1/jobs/{job_id(rng.randrange(count))}"), repeats * 2)
    return {"list": Timings.of(first + deep), "get": Timings.of(one)}


def _random_cursor(count: int, rng: random.Random) -> str:
    return encode_job_cursor(job_id(rng.randrange(count)))


def plain_api(
    url: str, count: int, repeats: int, full_reads: int, rng: random.Random
) -> dict[str, Timings]:
    """Plain APScheduler on the same store: ``get_jobs()`` (every job) and ``get_job(id)``."""
    scheduler = BackgroundScheduler(jobstores={"default": plain_store(url)}, timezone=UTC)
    scheduler.start(paused=True)
    try:
        every = _timed(scheduler.get_jobs, full_reads)
        one = _timed(lambda: scheduler.get_job(job_id(rng.randrange(count))), repeats * 2)
    finally:
        scheduler.shutdown(wait=False)
    return {"list": Timings.of(every), "get": Timings.of(one)}
