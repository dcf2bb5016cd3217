"""Times and durations in words, as the pages show them."""

from __future__ import annotations

from datetime import UTC, datetime

_MINUTE = 60
_HOUR = 3600
_DAY = 86_400


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def _whole(seconds: int, *, precise: bool = False) -> str:
    """A whole number of seconds in its largest units. Not ``precise``, minutes drop the
    seconds: a live page then changes the text once a minute for anything a minute away."""
    if seconds < _MINUTE:
        return f"{seconds} s"
    if seconds < _HOUR:
        minutes, rest = divmod(seconds, _MINUTE)
        return f"{minutes} min {rest} s" if precise and rest else f"{minutes} min"
    if seconds < _DAY:
        hours, rest = divmod(seconds, _HOUR)
        minutes = rest // _MINUTE
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, rest = divmod(seconds, _DAY)
    hours = rest // _HOUR
    return f"{_plural(days, 'day')} {hours} h" if hours else _plural(days, "day")


def relative(moment: datetime, now: datetime) -> str:
    """``in 5 min``, ``3 s ago`` or ``now``."""
    delta = (moment - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    text = _whole(int(abs(delta)))
    return f"in {text}" if delta > 0 else f"{text} ago"


def duration(seconds: float | None) -> str:
    """A run's duration: ``340 ms``, ``2.51 s``, ``14.2 s``, ``3 min 5 s``; a dash if unknown."""
    if seconds is None:
        return "\N{EN DASH}"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < _MINUTE:
        return f"{seconds:.1f} s"
    return _whole(int(seconds), precise=True)


def stamp(moment: datetime) -> str:
    """The absolute time in UTC, which the page's script shows in the reader's zone."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
