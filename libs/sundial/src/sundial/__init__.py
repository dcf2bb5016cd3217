"""Sundial: write scheduled jobs as plain Python functions."""

from sundial.context import already_succeeded, current_run, succeeded_since
from sundial.jobs import JobDefinitionError, at, cron, every, job, task

__version__ = "0.1.0"

__all__ = [
    "JobDefinitionError",
    "__version__",
    "already_succeeded",
    "at",
    "cron",
    "current_run",
    "every",
    "job",
    "succeeded_since",
    "task",
]
