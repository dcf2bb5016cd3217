"""Templates: one Jinja environment that escapes everything it renders by default.

Job names, error messages and tracebacks come from users' code; autoescaping makes them
text on the page whatever they contain. Pages also get a Content-Security-Policy that
allows scripts and styles from this server only, so that markup slipping through could
still not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

import sundial
from sundial.models import FINAL_OUTCOMES, CommandKind, JobState, Outcome
from sundial_api.ui import formatting
from sundial_api.ui.actions import ACTIONS, actions_for
from sundial_api.ui.session import CSRF_FIELD, CSRF_HEADER, Access, Role, Session, SessionCodec

STATIC_PREFIX = "/ui/static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # pages carry a CSRF token and live data: never from a cache
    "Cache-Control": "no-store",
}
#: outcomes a person should look at, styled as problems
BAD_OUTCOMES = frozenset({Outcome.FAILURE, Outcome.TIMEOUT, Outcome.MISSED, Outcome.INTERRUPTED})


def _static(path: str) -> str:
    # the version in the query makes browsers fetch our own files anew after an upgrade
    return f"{STATIC_PREFIX}/{path}?v={sundial.__version__}"


def _action_label(kind: CommandKind) -> str:
    action = ACTIONS.get(kind.value)
    return action.label if action else kind.value.capitalize()


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("sundial_api.ui", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        relative=formatting.relative, duration=formatting.duration, stamp=formatting.stamp
    )
    env.globals.update(
        static=_static,
        version=sundial.__version__,
        csrf_field=CSRF_FIELD,
        csrf_header=CSRF_HEADER,
        bad_outcomes=BAD_OUTCOMES,
        job_states=list(JobState),
        final_outcomes=FINAL_OUTCOMES,
        all_outcomes=list(Outcome),
        actions_for=actions_for,
        action_label=_action_label,
    )
    return env


_ENV = _environment()


@dataclass(frozen=True)
class Viewer:
    """Who a page is rendered for, at which moment, and where its forms return to."""

    access: Access
    role: Role | None
    #: whether anyone can log in (an API token is configured)
    logins: bool
    csrf: str
    now: datetime
    page_url: str


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)


def page(
    request: Request,
    codec: SessionCodec,
    session: Session,
    template: str,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A whole page (or, for htmx, a fragment) with the security headers and the cookie."""
    response = HTMLResponse(render(template, **context), status_code=status)
    response.headers.update(SECURITY_HEADERS)
    codec.write(request, response, session)
    return response
