"""Reconciling the code's job definitions with the job store and the catalog at start."""

from __future__ import annotations

from datetime import UTC, datetime

from sundial.jobs import JobDefinition, Registry, every
from sundial.models import JobSource, JobState, JobView
from sundial_scheduler.catalog import plan_sync, with_next_run


async def sync_inventory() -> None: ...


async def send_digest() -> None: ...


def definition(job_id: str = "sync", minutes: int = 5) -> JobDefinition:
    registry = Registry()
    registry.job(every(minutes=minutes), id=job_id)(sync_inventory)
    return registry.jobs[job_id]


def api_job(job_id: str) -> JobView:
    return JobView(
        id=job_id,
        name=job_id,
        func="tests:send_digest",
        trigger=every(minutes=1),
        trigger_text="every minute",
        source=JobSource.API,
    )


def test_a_new_definition_is_added() -> None:
    plan = plan_sync({"sync": definition()}, catalog={}, stored=set())

    assert [d.id for d in plan.add] == ["sync"]
    assert plan.keep == {} and plan.remove == []


def test_an_unchanged_definition_keeps_its_run_time_changes() -> None:
    paused = definition().view().model_copy(update={"state": JobState.PAUSED})

    plan = plan_sync({"sync": definition()}, catalog={"sync": paused}, stored={"sync"})

    assert plan.keep == {"sync": paused}
    assert plan.add == []


def test_a_changed_definition_replaces_what_was_stored() -> None:
    old = definition(minutes=5).view()

    plan = plan_sync({"sync": definition(minutes=10)}, catalog={"sync": old}, stored={"sync"})

    assert [d.id for d in plan.add] == ["sync"]
    assert plan.keep == {}


def test_a_stored_job_missing_from_the_catalog_is_rebuilt_from_code() -> None:
    plan = plan_sync({"sync": definition()}, catalog={}, stored={"sync"})

    assert [d.id for d in plan.add] == ["sync"]


def test_jobs_created_through_the_api_stay_and_jobs_gone_from_code_go() -> None:
    digest = api_job("digest")
    plan = plan_sync(
        {},
        catalog={"digest": digest, "old": definition("old").view()},
        stored={"digest", "old", "orphan"},
    )

    assert plan.keep == {"digest": digest}
    assert sorted(plan.remove) == ["old", "orphan"]


def test_the_state_follows_the_next_run_time() -> None:
    view = definition().view()
    moment = datetime(2030, 1, 1, tzinfo=UTC)

    assert with_next_run(view, None).state is JobState.PAUSED
    assert with_next_run(view, moment).state is JobState.SCHEDULED
    assert with_next_run(view, moment).next_run_time == moment
