"""Moments as users give them: ISO 8601 text (or datetimes in code), within sane years."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BeforeValidator

from sundial.constants import MAX_YEARS_AHEAD

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _iso_8601(value: object) -> object:
    """Refuse numbers: a lone ``0.5`` is far likelier a mistake than a Unix timestamp."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        raise ValueError(
            f"{value!r} is a number; give a date and time in ISO 8601, e.g. 2030-01-01T06:00:00Z"
        )
    return value


#: a datetime from ISO 8601 text or a datetime, never from a number
IsoDatetime = Annotated[datetime, BeforeValidator(_iso_8601)]


def check_within_reach(value: datetime) -> datetime:
    """``value`` unless it lies more than ``MAX_YEARS_AHEAD`` years from now."""
    latest = datetime.now(UTC).year + MAX_YEARS_AHEAD
    if value.year > latest:
        raise ValueError(
            f"{value.isoformat()} is more than {MAX_YEARS_AHEAD} years ahead (after {latest}); "
            "check the year"
        )
    return value
