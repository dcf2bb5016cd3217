"""Time zone names, checked once for settings and triggers alike."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone this machine knows; ValueError otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as UTC") from None
    return name
