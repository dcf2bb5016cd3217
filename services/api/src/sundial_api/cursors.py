"""Opaque page cursors: base64url of a small JSON document."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from sundial.backends import RunCursor
from sundial_api.errors import ApiError


def _encode(data: dict[str, str]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> dict[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        data = None
    if not isinstance(data, dict) or not all(_storable(v) for v in data.values()):
        raise invalid_cursor()
    return data


def _storable(value: object) -> bool:
    """Text that every backend can compare: no NUL, no unpaired surrogate."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def invalid_cursor() -> ApiError:
    return ApiError(
        400, "invalid_cursor", "invalid cursor; pass the next_cursor of a previous page unchanged"
    )


def encode_job_cursor(last_id: str) -> str:
    return _encode({"after": last_id})


def decode_job_cursor(cursor: str) -> str:
    after = _decode(cursor).get("after")
    if not after:
        raise invalid_cursor()
    return after


def encode_run_cursor(position: RunCursor) -> str:
    return _encode({"t": position.scheduled_time.isoformat(), "r": position.run_id})


def decode_run_cursor(cursor: str) -> RunCursor:
    data = _decode(cursor)
    try:
        moment = datetime.fromisoformat(data["t"])
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return RunCursor(scheduled_time=moment.astimezone(UTC), run_id=data["r"])
    except (KeyError, ValueError, OverflowError):
        raise invalid_cursor() from None
