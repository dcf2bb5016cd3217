"""Page cursors, in formats the OpenAPI schema states exactly.

A page of jobs ends at a job id, and the next page starts after it: the job cursor is that
id. A page of runs ends at a run, newest first, ordered by scheduled time and then run id:
the run cursor is ``<scheduled time in microseconds since 1970>~<run id>``. Any text of
these shapes is a valid cursor (it pages from that point), so the schema's patterns say
all there is to know.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sundial.backends import RunCursor
from sundial.constants import JOB_ID_REGEX
from sundial_api.errors import ApiError

JOB_CURSOR_PATTERN = JOB_ID_REGEX
#: 16 digits of microseconds reach past the year 2250, beyond any run's scheduled time
RUN_CURSOR_PATTERN = r"^[0-9]{1,16}~[A-Za-z0-9_.:-]{1,191}$"
JOB_CURSOR_DOC = "the `next_cursor` of the previous page: the last job id it listed"
RUN_CURSOR_DOC = (
    "the `next_cursor` of the previous page: `<scheduled time in microseconds since "
    "1970-01-01 UTC>~<run id>` of the last run it listed"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def invalid_cursor() -> ApiError:
    return ApiError(
        400, "invalid_cursor", "invalid cursor; pass the next_cursor of a previous page unchanged"
    )


def encode_job_cursor(last_id: str) -> str:
    return last_id


def decode_job_cursor(cursor: str) -> str:
    if not re.match(JOB_CURSOR_PATTERN, cursor):
        raise invalid_cursor()
    return cursor


def encode_run_cursor(position: RunCursor) -> str:
    micros = (position.scheduled_time - _EPOCH) // _MICROSECOND
    return f"{micros}~{position.run_id}"


def decode_run_cursor(cursor: str) -> RunCursor:
    if not re.match(RUN_CURSOR_PATTERN, cursor):
        raise invalid_cursor()
    micros, run_id = cursor.split("~", 1)
    return RunCursor(scheduled_time=_EPOCH + int(micros) * _MICROSECOND, run_id=run_id)
