"""Triggers that job stores written by earlier Sundial versions still hold.

Before crontab text was evaluated by :class:`~sundial.triggers.cron.CrontabTrigger`, cron
jobs were stored with APScheduler's ``CronTrigger`` under the subclass name
``sundial.triggers.WallClockCronTrigger``. APScheduler deletes a job store row that it
cannot unpickle, so that name must stay importable: the row then loads, and the scheduler
replaces the outdated trigger with one built from the job's definition (see
:func:`is_current`).
"""

from __future__ import annotations

from typing import Any

from apscheduler.triggers.cron import CronTrigger


class WallClockCronTrigger(CronTrigger):  # type: ignore[misc]
    """Only for unpickling stored jobs; it evaluates as APScheduler's ``CronTrigger``."""


def is_current(trigger: Any) -> bool:
    """Whether a stored job's trigger is one this Sundial builds, rather than an outdated
    one that the scheduler must rebuild from the job's definition or catalog entry.

    Sundial no longer builds any ``CronTrigger``: such a trigger ANDs the day fields,
    numbers weekdays from Monday and loses fires next to clock changes.
    """
    return not isinstance(trigger, CronTrigger)
