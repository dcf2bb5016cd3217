"""Crontab text read as crontab(5) defines it and as cronie's parser accepts it.

Each field is a comma-separated list of ``*``, ``*/step``, ``value``, ``first-last`` or
``first-last/step``; months and weekdays may be written as three-letter names in any case;
weekday 0 and 7 are Sunday, and a weekday range that ends on Sunday (``sat-sun``,
``mon-0``) runs up to 7, as cronie reads it. The macros stand for the lines crontab(5)
gives them. Anything else is refused with a message that names the field, the value and
the rule, so that a line pasted from a crontab either means what cron means or fails.

Evaluation is cronsim's; this module only decides what is valid and hands cronsim text
that it reads the same way cronie does.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from cronsim import CronSim

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: the lines crontab(5) gives each macro
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: keyword-form names of the five fields, in crontab order
KEYWORDS = ("minute", "hour", "day", "month", "day_of_week")
# The keyword form keeps APScheduler's convention: fields finer than the coarsest one
# given start at their first value (``hour=2`` is 02:00, not every minute of 02:xx).
_KEYWORD_DEFAULTS = {"minute": "0", "hour": "0", "day": "1", "month": "1", "day_of_week": "*"}
_COARSE_TO_FINE = ("month", "day", "day_of_week", "hour", "minute")
# Fields that APScheduler's keyword form had and crontab has not. Earlier versions stored
# them in the catalog; where a value says nothing a crontab line could not (every year,
# every week, at second 0), it is dropped, so those catalog entries still read.
_DROPPABLE = {"second": "0", "week": "*", "year": "*"}
# February counts its leap day: a field that matches only 29 February still fires.
_LONGEST_MONTH = {month: calendar.monthrange(2000, month)[1] for month in range(1, 13)}


class CrontabError(ValueError):
    """Crontab text that cron would refuse or that could never fire."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()

    def fail(self, text: str, rule: str) -> CrontabError:
        return CrontabError(f"{self.name} field {text!r}: {rule}")

    def number(self, text: str, token: str) -> int:
        if _is_number(token):
            value = int(token)
            if not self.low <= value <= self.high:
                raise self.fail(text, f"{token} is out of range {self.low}-{self.high}")
            return value
        if self.names and token.lower() in self.names:
            return self.names.index(token.lower()) + self.low
        if not token:
            raise self.fail(text, "a number is missing")
        raise self.fail(text, f"{token!r} is not {self._allowed()}")

    def _allowed(self) -> str:
        if self is DAY_OF_WEEK:
            return "a weekday: use 0-7 (0 and 7 are Sunday) or sun-sat"
        if self.names:
            return f"a month: use {self.low}-{self.high} or jan-dec"
        return f"a number from {self.low} to {self.high}"


MINUTE = _Field("minute", 0, 59)
HOUR = _Field("hour", 0, 23)
DAY_OF_MONTH = _Field("day-of-month", 1, 31)
MONTH = _Field("month", 1, 12, MONTH_NAMES)
DAY_OF_WEEK = _Field("day-of-week", 0, 7, DAY_NAMES)
FIELDS = (MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK)


@dataclass(frozen=True)
class Crontab:
    """Valid crontab text, with what cron's rules need to know about it."""

    text: str
    #: the text as cronsim reads it: macros expanded, weekday ranges ending on Sunday at 7
    evaluated: str
    #: the minute, hour, day-of-month, month and day-of-week values (weekday 7 counted as 0)
    values: tuple[frozenset[int], ...]
    #: which fields start with ``*``: cron's day rule and daylight-saving rules look at that
    starred: tuple[bool, ...]

    @property
    def fixed_time(self) -> bool:
        """A job at set times of day (cronie's "specific time"): neither minute nor hour
        starts with ``*``."""
        return not (self.starred[0] or self.starred[1])

    @property
    def either_day(self) -> bool:
        """Both day fields restricted: a day matches if either one matches."""
        return not (self.starred[2] or self.starred[4])

    def explain(self) -> str:
        """The schedule in English words, e.g. ``At 02:30 on Sunday``."""
        words: str = CronSim(self.evaluated, datetime(2000, 1, 1)).explain()
        return words


def parse_crontab(text: str) -> Crontab:
    """Validate crontab text; raises :class:`CrontabError` naming the field and rule."""
    normalized = " ".join(text.split())
    if normalized.startswith("@"):
        return _macro(normalized)
    parts = normalized.split(" ") if normalized else []
    if len(parts) != len(FIELDS):
        extra = " (crontab has no seconds or years field)" if len(parts) in (6, 7) else ""
        raise CrontabError(
            f"wrong number of fields: got {len(parts)}, expected 5 (minute hour day-of-month "
            f"month day-of-week) or a macro such as @daily{extra}"
        )
    parsed = [_parse_field(field, part) for field, part in zip(FIELDS, parts, strict=True)]
    crontab = Crontab(
        text=normalized,
        evaluated=" ".join(evaluated for _, evaluated in parsed),
        values=tuple(values for values, _ in parsed),
        starred=tuple(part.startswith("*") for part in parts),
    )
    _check_can_fire(crontab, parts)
    return crontab


def crontab_from_keywords(fields: Mapping[str, str | int]) -> str:
    """Crontab text for the keyword form, e.g. ``hour=2, minute=30`` -> ``30 2 * * *``.

    Keyword values are crontab field text (``day_of_week="0"`` is Sunday); fields finer
    than the coarsest one given default to their first value, coarser ones to ``*``.
    """
    fields = {
        name: value
        for name, value in fields.items()
        if not (name in _DROPPABLE and str(value).strip() == _DROPPABLE[name])
    }
    unknown = sorted(set(fields) - set(KEYWORDS))
    if unknown:
        raise CrontabError(
            f"unknown cron field(s) {unknown}; the fields are crontab's: "
            f"{', '.join(KEYWORDS)} (day is the day of the month)"
        )
    if not fields:
        raise CrontabError(f"give at least one of {', '.join(KEYWORDS)}")
    coarsest = min(_COARSE_TO_FINE.index(name) for name in fields)
    chosen: dict[str, str] = {}
    for position, name in enumerate(_COARSE_TO_FINE):
        value = str(fields[name]).strip() if name in fields else None
        if value is not None and (not value or any(char.isspace() for char in value)):
            field = FIELDS[KEYWORDS.index(name)]
            raise field.fail(value, "a field is one word; separate values with ','")
        default = _KEYWORD_DEFAULTS[name] if position > coarsest else "*"
        chosen[name] = value if value is not None else default
    return " ".join(chosen[name] for name in KEYWORDS)


def _macro(text: str) -> Crontab:
    if text == "@reboot":
        raise CrontabError(
            "@reboot is not supported: it means 'when the cron daemon starts', and a "
            "scheduler that outlives restarts has no such moment; give a time instead"
        )
    line = MACROS.get(text)
    if line is None:
        raise CrontabError(
            f"unknown macro {text!r}; crontab(5) has {', '.join(MACROS)} (lower case)"
        )
    return replace(parse_crontab(line), text=text)


def _parse_field(field: _Field, text: str) -> tuple[frozenset[int], str]:
    values: set[int] = set()
    evaluated: list[str] = []
    for term in text.split(","):
        if not term:
            raise field.fail(text, "a list item is empty")
        found, term_evaluated = _parse_term(field, text, term)
        values.update(found)
        evaluated.append(term_evaluated)
    if field is DAY_OF_WEEK and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values), ",".join(evaluated)


def _parse_term(field: _Field, text: str, term: str) -> tuple[range, str]:
    body, slash, step_text = term.partition("/")
    step = 1
    if slash:
        if not _is_number(step_text):
            raise field.fail(text, f"step {step_text!r} is not a whole number")
        step = int(step_text)
        if step < 1:
            raise field.fail(text, "step must be at least 1")
    if body == "*":
        return range(field.low, field.high + 1, step), term
    if "~" in body:
        raise field.fail(
            text,
            "random values ('~') are not supported: the same text must give the same "
            "times every time it is read; pick a value",
        )
    first_text, dash, last_text = body.partition("-")
    first = field.number(text, first_text)
    if not dash:
        if slash:
            raise field.fail(
                text, f"a step needs a range or '*' before it, e.g. '{body}-{field.high}/{step}'"
            )
        return range(first, first + 1), body
    if not last_text:
        raise field.fail(text, f"range {body!r} has no end")
    last = field.number(text, last_text)
    if field is DAY_OF_WEEK and last == 0 and first > 0:
        last = 7  # cronie reads a range that ends on Sunday as ending on day 7 (``sat-sun``)
    if last < first:
        raise field.fail(
            text, f"range {body!r} runs backwards; the first value must not be above the last"
        )
    # cronsim reads a one-value range with a step (``5-5/2``) as running to the end of
    # the field, so such a range is handed to it as the value alone
    evaluated = str(first) if first == last else f"{first}-{last}{slash}{step_text}"
    return range(first, last + 1, step), evaluated


def _is_number(token: str) -> bool:
    # ASCII only: str.isdigit() also accepts digits of other scripts, which cron does not
    return token.isascii() and token.isdigit()


def _check_can_fire(crontab: Crontab, parts: list[str]) -> None:
    """Refuse a day-of-month that no chosen month has, where it alone picks the days."""
    if crontab.either_day:
        return  # the weekday field alone matches some day of every month
    days, months = crontab.values[2], crontab.values[3]
    if min(days) > max(_LONGEST_MONTH[month] for month in months):
        raise DAY_OF_MONTH.fail(
            parts[2],
            f"no month in month field {parts[3]!r} has day {min(days)}, so it would never run",
        )
