"""The UI's session: who is logged in, and the CSRF token of their forms.

A session is a signed cookie (itsdangerous), not a server-side record: any API process
with the same tokens accepts it, and changing either token ends every session,
because the signing key is derived from the tokens that can log in. Every visitor has a
session, at first anonymous, so that even the login form carries a CSRF token.

Roles: logging in with the API token gives :attr:`Role.OPERATOR`, which may change jobs;
logging in with ``SUNDIAL_API_READ_TOKEN`` gives :attr:`Role.READER`, which may read the
pages (a must when read protection is on) and is offered no changes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from sundial.config import Settings
from sundial_api.deps import token_matches

COOKIE_NAME = "sundial_session"
#: the cookie is sent to the UI only, never to the JSON API
COOKIE_PATH = "/ui"
#: a login lasts a working day; after that the token is asked for again
MAX_AGE_SECONDS = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SALT = "sundial.ui.session"
_KEY_LABEL = b"sundial ui session key"


class Role(StrEnum):
    OPERATOR = "operator"
    READER = "reader"


@dataclass(frozen=True)
class Session:
    role: Role | None
    csrf: str
    #: not yet in the browser: the response must set the cookie
    new: bool = False


def _fresh(role: Role | None) -> Session:
    return Session(role=role, csrf=secrets.token_urlsafe(32), new=True)


@dataclass(frozen=True)
class Access:
    """What the session may do, and if it may not change jobs, why (shown on buttons)."""

    may_change: bool
    reason: str | None
    #: whether pages show the actions at all (a reader's login is offered none)
    offers_changes: bool = True


def access(session: Session, settings: Settings) -> Access:
    if settings.api_token is None:
        return Access(
            False, "Changes are disabled: the API server has no SUNDIAL_API_TOKEN configured."
        )
    if session.role is Role.READER:
        return Access(False, "You are logged in to read: changes need the API token.", False)
    if session.role is not Role.OPERATOR:
        return Access(False, "Log in with the API token to pause, resume, run or remove jobs.")
    return Access(True, None)


def may_read(session: Session, settings: Settings) -> bool:
    """Whether the session may see pages: always, unless read protection is on."""
    return not settings.reads_protected or session.role is not None


class SessionCodec:
    """Reads and writes the session cookie."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        tokens = [token for token in (settings.api_token, settings.api_read_token) if token]
        # Without any token nobody can log in: a per-process key serves anonymous sessions.
        secret = "\0".join(tokens).encode() if tokens else secrets.token_bytes(32)
        key = hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()
        self._serializer = URLSafeTimedSerializer(key, salt=_SALT)

    def role_for(self, token: str) -> Role | None:
        """The role a login with ``token`` gets, or None if it is no token of ours."""
        for expected, role in (
            (self._settings.api_token, Role.OPERATOR),
            (self._settings.api_read_token, Role.READER),
        ):
            if expected is not None and token_matches(token, expected):
                return role
        return None

    def read(self, request: Request) -> Session:
        """The request's session, or a new anonymous one if it has none that is valid."""
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie:
            try:
                data = self._serializer.loads(cookie, max_age=MAX_AGE_SECONDS)
            except BadSignature:
                data = None
            if isinstance(data, dict) and isinstance(data.get("csrf"), str):
                try:
                    role = Role(data["role"]) if data.get("role") else None
                except ValueError:
                    # a role this version does not know: start over, anonymous
                    return _fresh(None)
                return Session(role=role, csrf=data["csrf"])
        return _fresh(None)

    def logged_in(self, role: Role | None) -> Session:
        """A new session for ``role`` (None: logged out), with a new CSRF token."""
        return _fresh(role)

    def write(self, request: Request, response: Response, session: Session) -> None:
        """Set the cookie on ``response`` if ``session`` is not yet in the browser."""
        if not session.new:
            return
        value = self._serializer.dumps({"role": session.role, "csrf": session.csrf})
        response.set_cookie(
            COOKIE_NAME,
            value,
            max_age=MAX_AGE_SECONDS,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            # uvicorn's proxy headers make this https behind a TLS-terminating proxy
            secure=request.url.scheme == "https",
        )


def csrf_valid(session: Session, submitted: str | None) -> bool:
    """Whether a form or htmx request carried this session's CSRF token."""
    return not session.new and submitted is not None and token_matches(submitted, session.csrf)
