"""Dependencies as ``Annotated`` aliases: settings, backend, the bearer-token check and
the query parameters that several routes share."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sundial.backends import Backend
from sundial.config import Settings
from sundial.constants import MAX_COMMAND_WAIT_SECONDS, MAX_PAGE_SIZE
from sundial.models import Outcome
from sundial.timestamps import IsoDatetime
from sundial_api.cursors import (
    JOB_CURSOR_DOC,
    JOB_CURSOR_PATTERN,
    RUN_CURSOR_DOC,
    RUN_CURSOR_PATTERN,
)
from sundial_api.errors import ApiError
from sundial_api.schemas import ErrorResponse

#: the security scheme of reads, in the OpenAPI schema only where read protection is on
READ_SCHEME = "ReadToken"
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="the value of SUNDIAL_API_TOKEN; required for every change",
)
_read_bearer = HTTPBearer(
    auto_error=False,
    scheme_name=READ_SCHEME,
    description="the value of SUNDIAL_API_READ_TOKEN or SUNDIAL_API_TOKEN",
)


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
BackendDep = Annotated[Backend, Depends(get_backend)]


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison, so that timing does not reveal how much of a token matched."""
    return secrets.compare_digest(given.encode(), expected.encode())


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
ReadCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_read_bearer)]
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def may_read(settings: Settings, token: str | None) -> bool:
    """Whether ``token`` (None: none given) may read, under the server's read protection."""
    if not settings.reads_protected:
        return True
    return token is not None and any(
        token_matches(token, expected)
        for expected in (settings.api_read_token, settings.api_token)
        if expected is not None
    )


def require_reader(settings: SettingsDep, credentials: ReadCredentials) -> None:
    """With read protection on, refuse a read without the read token or the API token."""
    if may_read(settings, credentials.credentials if credentials else None):
        return
    if credentials is None:
        raise ApiError(
            401,
            "unauthorized",
            "reading needs a token on this server: send 'Authorization: Bearer "
            "<SUNDIAL_API_READ_TOKEN or SUNDIAL_API_TOKEN>'",
            headers=_CHALLENGE,
        )
    raise ApiError(401, "unauthorized", "wrong bearer token", headers=_CHALLENGE)


def require_token(settings: SettingsDep, credentials: Credentials) -> None:
    """Refuse a change unless it carries ``Authorization: Bearer $SUNDIAL_API_TOKEN``."""
    if settings.api_token is None:
        raise ApiError(
            403,
            "mutations_disabled",
            "changes are disabled: no API token is configured; set SUNDIAL_API_TOKEN on the "
            "API server to enable them and send it as 'Authorization: Bearer <token>'",
        )
    if credentials is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing bearer token: send 'Authorization: Bearer <SUNDIAL_API_TOKEN>'",
            headers=_CHALLENGE,
        )
    if token_matches(credentials.credentials, settings.api_token):
        return
    read_token = settings.api_read_token
    if read_token is not None and token_matches(credentials.credentials, read_token):
        raise ApiError(
            403,
            "read_only",
            "the read token cannot change jobs; send SUNDIAL_API_TOKEN for changes",
        )
    raise ApiError(401, "unauthorized", "wrong bearer token", headers=_CHALLENGE)


RequireToken = Annotated[None, Depends(require_token)]
#: on a router or route: it needs a reader's token when read protection is on
READERS_ONLY = [Depends(require_reader)]
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorResponse,
        "description": "missing or wrong token (only where SUNDIAL_API_READ_TOKEN is set)",
    }
}


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size")]
JobCursor = Annotated[str | None, Query(description=JOB_CURSOR_DOC, pattern=JOB_CURSOR_PATTERN)]
RunCursorQuery = Annotated[
    str | None, Query(description=RUN_CURSOR_DOC, pattern=RUN_CURSOR_PATTERN)
]
Since = Annotated[
    IsoDatetime | None,
    Query(description="only runs scheduled at or after this time (ISO 8601; UTC if no offset)"),
]
OutcomeFilter = Annotated[Outcome | None, Query()]
Wait = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_COMMAND_WAIT_SECONDS,
        description="seconds to wait for the scheduler to apply the command",
    ),
]
