"""Start-up path of ``sundial-scheduler``: settings, logging, job modules, run."""

from __future__ import annotations

import asyncio

import structlog

from sundial.config import (
    ConfigurationError,
    Settings,
    exit_on_configuration_error,
    load_settings,
)
from sundial.jobs import JobDefinitionError, Registry
from sundial.logging import configure_logging
from sundial_scheduler.service import SundialScheduler

log = structlog.get_logger("sundial.scheduler")


def load_job_modules(modules: tuple[str, ...]) -> Registry:
    """The jobs and tasks of every module in ``SUNDIAL_JOB_MODULES``; exits if one is bad."""
    if not modules:
        log.warning(
            "scheduler.no_job_modules",
            hint="set SUNDIAL_JOB_MODULES to the modules that define your jobs "
            "(sundial_scheduler.jobs.examples has examples); only system_maintenance runs",
        )
    registry = Registry()
    for name in modules:
        try:
            registry.include(name)
        except JobDefinitionError as error:
            raise SystemExit(f"invalid job in {name}: {error}") from None
        except ImportError as error:
            raise SystemExit(
                f"invalid configuration: SUNDIAL_JOB_MODULES: cannot import {name!r}: {error}"
            ) from None
    return registry


def create_scheduler(settings: Settings | None = None) -> SundialScheduler:
    """The configured scheduler, with the job modules imported (not yet running)."""
    settings = settings or load_settings()
    return SundialScheduler(settings, registry=load_job_modules(settings.job_modules))


def main() -> None:
    settings = load_settings()
    configure_logging(log_format=settings.log_format, level=settings.log_level, write_behind=True)
    scheduler = create_scheduler(settings)
    try:
        code = asyncio.run(scheduler.run())
    except ConfigurationError as error:
        exit_on_configuration_error(error)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
