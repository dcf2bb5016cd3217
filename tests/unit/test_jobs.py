"""The job-authoring surface: @job, cron(), every(), at(), options and invalid definitions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sundial.jobs import (
    JobDefinition,
    JobDefinitionError,
    Registry,
    at,
    cron,
    define_job,
    every,
    func_ref,
    parse_duration,
)
from sundial.triggers import CronSpec, DateSpec, IntervalSpec

# Job functions must be module-level: the scheduler imports them by reference.


async def process_daily_reports() -> None:
    """Build yesterday's reports.

    Runs after the warehouse load.
    """


async def sync_inventory() -> None: ...


def export_orders(region: str, limit: int = 100) -> None: ...


def other_function() -> None: ...


def define(
    trigger: Any, func: Callable[..., Any] = sync_inventory, **options: Any
) -> JobDefinition:
    """Register ``func`` on a fresh registry and return the definition."""
    registry = Registry()
    registry.job(trigger, **options)(func)
    (definition,) = registry.jobs.values()
    return definition


def next_fires(definition: JobDefinition, after: datetime, count: int) -> list[datetime]:
    trigger = definition.trigger.build()
    fires: list[datetime] = []
    previous = None
    now = after
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fires.append(fire.astimezone(UTC))
        previous = now = fire
    return fires


# -- triggers ---------------------------------------------------------------------------


def test_cron_text_defines_a_daily_job_at_six_utc() -> None:
    definition = define(cron("0 6 * * *"), id="daily_reports")

    assert definition.trigger == CronSpec(expression="0 6 * * *")
    assert next_fires(definition, datetime(2025, 1, 15, 7, tzinfo=UTC), 2) == [
        datetime(2025, 1, 16, 6, tzinfo=UTC),
        datetime(2025, 1, 17, 6, tzinfo=UTC),
    ]


def test_cron_fields_with_day_of_week_name() -> None:
    definition = define(cron(hour=2, minute=30, day_of_week="sun"), id="weekly")

    assert definition.trigger.expression == "30 2 * * sun"
    # 2025-01-15 is a Wednesday: the next Sundays are the 19th and the 26th.
    assert next_fires(definition, datetime(2025, 1, 15, tzinfo=UTC), 2) == [
        datetime(2025, 1, 19, 2, 30, tzinfo=UTC),
        datetime(2025, 1, 26, 2, 30, tzinfo=UTC),
    ]


def test_cron_runs_in_the_jobs_own_time_zone() -> None:
    definition = define(cron("0 6 * * *", timezone="Europe/Berlin"), id="berlin")

    # 06:00 in Berlin is 05:00 UTC in winter (CET) and 04:00 UTC in summer (CEST).
    assert next_fires(definition, datetime(2025, 1, 15, 7, tzinfo=UTC), 1) == [
        datetime(2025, 1, 16, 5, tzinfo=UTC)
    ]
    assert next_fires(definition, datetime(2025, 7, 15, 7, tzinfo=UTC), 1) == [
        datetime(2025, 7, 16, 4, tzinfo=UTC)
    ]


def test_cron_defaults_to_utc() -> None:
    assert define(cron("0 6 * * *")).trigger.timezone == "UTC"


def test_every_adds_up_its_units() -> None:
    definition = define(every(hours=1, minutes=30), id="ninety")

    assert isinstance(definition.trigger, IntervalSpec)
    assert definition.trigger.seconds == 5400


def test_at_accepts_iso_text_with_offset() -> None:
    definition = define(at("2030-01-01T06:00:00+02:00"), id="once")

    assert isinstance(definition.trigger, DateSpec)
    assert definition.trigger.run_at == datetime(2030, 1, 1, 4, tzinfo=UTC)
    fire = definition.trigger.build().get_next_fire_time(None, datetime(2029, 1, 1, tzinfo=UTC))
    assert fire == datetime(2030, 1, 1, 4, tzinfo=UTC)


# -- options ----------------------------------------------------------------------------


def test_options_from_the_spec_example() -> None:
    definition = define(
        cron("0 6 * * *"),
        func=process_daily_reports,
        id="daily_reports",
        name="Daily Report Generation",
        timeout="15m",
        retries=2,
        retry_backoff="30s",
        max_instances=1,
        misfire_grace_time="2m",
        critical=True,
        tags=["reports", "finance"],
    )

    options = definition.options
    assert definition.id == "daily_reports"
    assert definition.name == "Daily Report Generation"
    assert options.timeout_seconds == 900
    assert options.retries == 2
    assert options.retry_backoff_seconds == 30
    assert options.max_instances == 1
    assert options.misfire_grace_time == 120
    assert options.critical is True
    assert options.tags == ("reports", "finance")


def test_description_comes_from_the_docstring() -> None:
    definition = define(every(hours=1), func=process_daily_reports)

    assert definition.options.description == (
        "Build yesterday's reports.\n\nRuns after the warehouse load."
    )


def test_explicit_description_wins_over_the_docstring() -> None:
    definition = define(every(hours=1), func=process_daily_reports, description="Reports")

    assert definition.options.description == "Reports"


def test_id_and_name_default_from_the_function() -> None:
    definition = define(every(minutes=15))

    assert definition.id == "sync_inventory"
    assert definition.name == "Sync inventory"
    assert definition.func_ref == func_ref(sync_inventory)
    assert definition.func_ref.endswith(":sync_inventory")


def test_guards_are_recorded() -> None:
    definition = define(
        every(hours=1), unique_per="day", requires=["load_warehouse"], requires_within="1d"
    )

    assert definition.options.unique_per == "day"
    assert definition.options.requires == ("load_warehouse",)
    assert definition.options.requires_within_seconds == 86400


def test_kwargs_are_kept_and_the_function_is_returned_unchanged() -> None:
    registry = Registry()

    decorated = registry.job(every(minutes=5), id="eu_orders", kwargs={"region": "eu"})(
        export_orders
    )

    assert decorated is export_orders
    assert registry.jobs["eu_orders"].kwargs == {"region": "eu"}
    assert registry.functions[func_ref(export_orders)] is export_orders


def test_task_registers_a_function_the_api_may_schedule() -> None:
    registry = Registry()

    registry.task(export_orders)

    assert registry.functions == {func_ref(export_orders): export_orders}
    assert registry.jobs == {}


def test_registering_the_same_function_again_replaces_the_definition() -> None:
    registry = Registry()
    registry.job(every(minutes=5), id="sync")(sync_inventory)

    registry.job(every(minutes=10), id="sync")(sync_inventory)

    assert registry.jobs["sync"].trigger == IntervalSpec(seconds=600)


# -- registries built from job modules ---------------------------------------------------
JOB_MODULE = """
from sundial import every, job, task


@job(every(minutes=5), id="sync", tags=("inventory",))
@job(every(hours=1), id="sync_hourly")
async def sync() -> None: ...


@task
def send_digest(recipient: str) -> None: ...


def helper() -> None: ...
"""


def write_module(folder: Path, name: str, source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    (folder / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    return name


def test_a_registry_takes_the_jobs_and_tasks_a_module_marks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(tmp_path, "team_jobs", JOB_MODULE, monkeypatch)

    registry = Registry()
    registry.include(name)

    assert sorted(registry.jobs) == ["sync", "sync_hourly"]
    assert registry.jobs["sync"].options.tags == ("inventory",)
    assert sorted(registry.functions) == ["team_jobs:send_digest", "team_jobs:sync"]


def test_registries_are_independent_of_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(tmp_path, "shared_jobs", JOB_MODULE, monkeypatch)
    first, second = Registry(), Registry()
    first.include(name)

    first.add(define_job(other_function, every(minutes=1), id="extra"))

    assert second.jobs == {}
    second.include(name)
    assert "extra" not in second.jobs


def test_two_functions_claiming_one_id_in_modules_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = JOB_MODULE + '\n@job(every(minutes=1), id="sync")\ndef other() -> None: ...\n'
    name = write_module(tmp_path, "clashing_jobs", source, monkeypatch)

    with pytest.raises(JobDefinitionError, match="job 'sync': id already used by"):
        Registry().include(name)


def test_the_example_jobs_load(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()
    registry.include("sundial_scheduler.jobs.examples")

    assert {"daily_reports", "sync_inventory", "flaky_export"} <= set(registry.jobs)
    assert "sundial_scheduler.jobs.examples:send_digest" in registry.functions


# -- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("1h30m", 5400),
        (" 1h 30m ", 5400),
        ("1.5h", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("500ms", 0.5),
        (45, 45),
        (2.5, 2.5),
        (timedelta(minutes=2), 120),
        (None, None),
    ],
)
def test_parse_duration(value: Any, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "abc", "15", "15 minutes", "-5s", "1x", True])
def test_parse_duration_rejects_nonsense(value: Any) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


# -- fingerprint ------------------------------------------------------------------------


def base_definition(**changes: Any) -> JobDefinition:
    options: dict[str, Any] = {"id": "sync", "timeout": "1m", "kwargs": {"region": "eu"}}
    options.update(changes)
    trigger = options.pop("trigger", every(minutes=5))
    func = options.pop("func", export_orders)
    return define(trigger, func=func, **options)


def test_fingerprint_is_stable_for_the_same_definition() -> None:
    assert base_definition().fingerprint() == base_definition().fingerprint()


@pytest.mark.parametrize(
    "change",
    [
        {"trigger": every(minutes=10)},
        {"trigger": cron("*/5 * * * *")},
        {"timeout": "2m"},
        {"retries": 1},
        {"critical": True},
        {"name": "Renamed"},
        {"kwargs": {"region": "us"}},
        {"func": other_function, "kwargs": {}},
    ],
    ids=lambda change: ",".join(change),
)
def test_fingerprint_changes_when_the_definition_changes(change: dict[str, Any]) -> None:
    assert base_definition(**change).fingerprint() != base_definition().fingerprint()


# -- the catalog view -------------------------------------------------------------------


def test_view_of_a_daily_cron_job() -> None:
    view = define(cron("0 6 * * *"), id="daily_reports", critical=True).view()

    assert view.id == "daily_reports"
    assert view.trigger_text == "cron '0 6 * * *' (UTC)"
    assert view.expected_interval_seconds == 86400
    assert view.options.critical is True
    assert view.func.endswith(":sync_inventory")
    assert (
        view.fingerprint
        == define(cron("0 6 * * *"), id="daily_reports", critical=True).fingerprint()
    )


def test_view_of_an_interval_job() -> None:
    view = define(every(minutes=15), id="sync_inventory").view()

    assert view.trigger_text == "every 15 minutes"
    assert view.expected_interval_seconds == 900


def test_view_of_a_one_off_job_has_no_interval() -> None:
    view = define(at("2030-01-01T06:00:00Z"), id="once").view()

    assert view.trigger_text == "once at 2030-01-01T06:00:00+00:00"
    assert view.expected_interval_seconds is None


# -- invalid definitions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "options", "reason"),
    [
        (cron("61 * * * *"), {}, "invalid cron expression '61 \\* \\* \\* \\*'"),
        (cron("0 6 * *"), {}, "expected 5"),
        (cron(hours=2), {}, "unknown cron field"),
        (cron(hour=25), {}, "invalid cron fields"),
        (cron("0 6 * * *", timezone="Mars/Olympus"), {}, "unknown time zone 'Mars/Olympus'"),
        (every(), {}, "seconds"),
        (at(datetime(2030, 1, 1, 6)), {}, "time zone offset"),
        (every(minutes=1), {"timeout": "15 minutes"}, "invalid duration '15 minutes'"),
        (every(minutes=1), {"retry_backoff": "soon"}, "invalid duration 'soon'"),
        (every(minutes=1), {"timeout": 0}, "timeout_seconds"),
        (every(minutes=1), {"retries": -1}, "retries"),
        (every(minutes=1), {"max_instances": 0}, "max_instances"),
        (every(minutes=1), {"unique_per": "week"}, "unique_per"),
        (every(minutes=1), {"requires": ["load"]}, "requires_within"),
        ("0 6 * * *", {}, "cron\\(\\), every\\(\\) or at\\(\\)"),
    ],
)
def test_invalid_definition_names_the_job(
    trigger: Any, options: dict[str, Any], reason: str
) -> None:
    registry = Registry()

    with pytest.raises(JobDefinitionError, match=f"^job 'broken_job': .*{reason}"):
        registry.job(trigger, id="broken_job", **options)(sync_inventory)

    assert registry.jobs == {}


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [({"region": "eu", "regoin": "us"}, "regoin"), ({}, "region")],
)
def test_kwargs_must_match_the_signature(kwargs: dict[str, Any], reason: str) -> None:
    registry = Registry()

    with pytest.raises(JobDefinitionError, match=f"^job 'export': .*{reason}"):
        registry.job(every(minutes=1), id="export", kwargs=kwargs)(export_orders)


def test_lambda_is_rejected() -> None:
    with pytest.raises(JobDefinitionError, match=r"^job 'anon': .*module-level"):
        Registry().job(every(minutes=1), id="anon")(lambda: None)


def test_local_function_is_rejected() -> None:
    def inner() -> None: ...

    with pytest.raises(JobDefinitionError, match=r"^job 'inner': .*module-level"):
        Registry().job(every(minutes=1))(inner)


def test_an_id_bound_to_another_function_is_rejected() -> None:
    registry = Registry()
    registry.job(every(minutes=1), id="sync")(sync_inventory)

    with pytest.raises(
        JobDefinitionError, match=r"^job 'sync': id already used by .*sync_inventory"
    ):
        registry.job(every(minutes=1), id="sync")(other_function)

    assert registry.jobs["sync"].func is sync_inventory


@pytest.mark.parametrize("job_id", ["has space", "-leading-dash", "x" * 192, "semi;colon", "ü"])
def test_invalid_ids_are_rejected(job_id: str) -> None:
    with pytest.raises(JobDefinitionError, match="ids are 1-191 letters"):
        Registry().job(every(minutes=1), id=job_id)(sync_inventory)


def test_a_job_that_leaves_overdue_after_unset_keeps_its_fingerprint_across_the_upgrade() -> None:
    # Computed by the release before overdue_after existed: a changed fingerprint would
    # make every scheduler replace every job, undoing pauses made through the API.
    assert base_definition().fingerprint() == "a73f4a6bb8c184ac"
    assert base_definition(overdue_after="10m").fingerprint() != "a73f4a6bb8c184ac"


# -- overdue grace ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "seconds"),
    [
        (every(seconds=10), 180),  # three intervals would be 30 s: the floor
        (every(minutes=1), 180),
        (every(minutes=15), 2700),
        (cron("0 * * * *"), 3600),
        (cron("0 6 * * *"), 3600),  # the ceiling
        (cron("0 6 * * mon"), 3600),
        (at("2030-01-01T06:00:00+00:00"), 180),  # no interval to scale by
    ],
)
def test_overdue_grace_defaults_to_three_intervals_within_three_minutes_and_an_hour(
    trigger: Any, seconds: float
) -> None:
    assert define(trigger).view().overdue_after_seconds() == seconds


def test_a_jobs_own_overdue_after_wins() -> None:
    definition = define(cron("0 6 * * *"), overdue_after="10m")
    assert definition.options.overdue_after_seconds == 600
    assert definition.view().overdue_after_seconds() == 600


def test_overdue_after_must_be_a_positive_duration() -> None:
    with pytest.raises(JobDefinitionError, match="job 'sync_inventory': overdue_after"):
        define(every(minutes=1), overdue_after="0s")
