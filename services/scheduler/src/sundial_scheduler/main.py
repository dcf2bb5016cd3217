"""Start-up path of ``sundial-scheduler``: settings, logging, job modules, run."""

from __future__ import annotations

import asyncio
import importlib

import structlog

from sundial.config import Settings, load_settings
from sundial.jobs import JobDefinitionError
from sundial.logging import configure_logging
from sundial_scheduler.service import SundialScheduler

log = structlog.get_logger("sundial.scheduler")


def load_job_modules(modules: tuple[str, ...]) -> None:
    """Import every module in ``SUNDIAL_JOB_MODULES`` so its ``@job``s register."""
    for name in modules:
        try:
            importlib.import_module(name)
        except JobDefinitionError as error:
            raise SystemExit(f"invalid job in {name}: {error}") from None
        except ImportError as error:
            raise SystemExit(
                f"invalid configuration: SUNDIAL_JOB_MODULES: cannot import {name!r}: {error}"
            ) from None


def create_scheduler(settings: Settings | None = None) -> SundialScheduler:
    """The configured scheduler, with the job modules imported (not yet running)."""
    settings = settings or load_settings()
    load_job_modules(settings.job_modules)
    return SundialScheduler(settings)


def main() -> None:
    settings = load_settings()
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    scheduler = create_scheduler(settings)
    raise SystemExit(asyncio.run(scheduler.run()))


if __name__ == "__main__":
    main()
