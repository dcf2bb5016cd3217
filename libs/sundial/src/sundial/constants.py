"""Facts every Sundial process must agree on, each written once, with the reason for it."""

from __future__ import annotations

#: How often every instance records its heartbeat (at most: a short lease ticks faster).
HEARTBEAT_INTERVAL_SECONDS = 2.0

#: An instance whose heartbeat is older than this many of its ticks is taken for dead:
#: one late tick is a busy machine, three in a row are a process that is gone.
MISSED_HEARTBEATS_FOR_DEAD = 3

#: A dead instance's record is kept this long, then the leader forgets it: long enough for
#: ``sundial workers list`` to show last night's crash in the morning, short enough that
#: autoscaled workers that came and went do not pile up.
FORGET_INSTANCE_AFTER_SECONDS = 86_400.0

#: Longest a client may wait for the leader to apply a command (``?wait=``); longer waits
#: would hold an API worker and hide a scheduler that is not applying anything.
MAX_COMMAND_WAIT_SECONDS = 30.0

#: Longest id (of a job, run, command or instance) the SQL backends' id columns hold; a
#: longer one is refused where it is given rather than failing every write later.
MAX_ID_CHARS = 191

#: What a job id is, in words and as a pattern.
JOB_ID_RULE = (
    f"1-{MAX_ID_CHARS} letters, digits, '_', '-', '.', ':', starting with a letter or digit"
)
JOB_ID_REGEX = rf"^[A-Za-z0-9][A-Za-z0-9_.:-]{{0,{MAX_ID_CHARS - 1}}}$"

#: Shortest window ``requires_within`` may look back: a dependency's success is recorded
#: when its run ends, so a window shorter than a second would skip every run.
MIN_REQUIRES_WITHIN_SECONDS = 1.0

#: Largest random delay (``jitter``) a trigger may add: jitter spreads load over minutes;
#: hours of it make the schedule meaningless and the overdue alert fire.
MAX_JITTER_SECONDS = 3600

#: How far ahead a one-off run or a start date may lie; further is a typo for the year.
MAX_YEARS_AHEAD = 100

#: Largest page a listing returns; larger pages make one request hold the backend long.
MAX_PAGE_SIZE = 500

#: Catalog entries read per round trip when a process needs the whole catalog.
CATALOG_SCAN_PAGE = 500

#: What a secret keyword argument's value is shown as, everywhere it is shown.
SECRET_MASK = "***"

#: Run records keep this much of a job's error; a run history must stay cheap to read.
MAX_ERROR_MESSAGE_CHARS = 2_000
MAX_TRACEBACK_CHARS = 8_000

#: The workers' queue a run goes to when its job names none (queue executor).
DEFAULT_QUEUE = "default"

#: When a job counts as overdue (its next run time passed and nothing ran), unless the job
#: says (``overdue_after=``): this many of its intervals late, within these bounds. The
#: floor stays above what an on-time job can appear to lag (the API's catalog reading is
#: cached, Prometheus scrapes every 15 s); past the ceiling, a daily job that has not run
#: for an hour is worth a person's look. A job without a regular interval (a one-off)
#: gets the floor: there is no later fire to make up for it.
OVERDUE_INTERVALS = 3
OVERDUE_MIN_SECONDS = 180.0
OVERDUE_MAX_SECONDS = 3600.0

#: The built-in job that prunes run history, claims and finished commands.
MAINTENANCE_JOB_ID = "system_maintenance"
MAINTENANCE_INTERVAL_HOURS = 6


def default_overdue_after(interval_seconds: float | None) -> float:
    """Seconds past its next run time before a job with this interval counts as overdue."""
    if interval_seconds is None:
        return OVERDUE_MIN_SECONDS
    return min(max(OVERDUE_INTERVALS * interval_seconds, OVERDUE_MIN_SECONDS), OVERDUE_MAX_SECONDS)


def heartbeat_interval(lease_seconds: float) -> float:
    """How often an instance ticks: every heartbeat interval, or thrice per lease if shorter.

    A leader renews its lease on the same tick, so it must tick several times per lease.
    """
    return min(HEARTBEAT_INTERVAL_SECONDS, lease_seconds / 3)


def dead_after(lease_seconds: float) -> float:
    """Heartbeat age past which an instance counts as dead, for every reader alike.

    Never shorter than the lease: a leader that cannot prove it is alive for a lease has
    lost its lock anyway, so no reader may give up on it sooner.
    """
    return max(MISSED_HEARTBEATS_FOR_DEAD * heartbeat_interval(lease_seconds), lease_seconds)
