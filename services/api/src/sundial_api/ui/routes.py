"""The web UI at ``/ui``: pages, their live feeds, login and the job actions.

Pages read through :mod:`sundial_api.ui.pages` (the API's view functions); actions queue
the API's commands through :func:`sundial_api.commanding.submit`. None of these routes is
part of the OpenAPI schema: they answer HTML, for people.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import structlog
from fastapi import APIRouter, Depends, FastAPI, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from sundial.backends import Backend, BackendError
from sundial.config import Settings
from sundial.models import Command, JobState, Outcome
from sundial_api.commanding import command_out, require_job, submit
from sundial_api.deps import BackendDep, SettingsDep
from sundial_api.errors import ApiError, describe_validation
from sundial_api.events import stream
from sundial_api.schemas import CommandOut, SchedulerStatus
from sundial_api.ui.actions import ACTIONS
from sundial_api.ui.live import POLL_SECONDS, Fragment, PageFeed, Rows, banner_fragment
from sundial_api.ui.pages import (
    Banner,
    HistoryFilter,
    JobFilters,
    instances_page,
    job_page_data,
    job_rows,
    jobs_page,
    outage,
    run_page_data,
    scheduler_state,
)
from sundial_api.ui.rendering import STATIC_PREFIX, Viewer, page, render
from sundial_api.ui.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    Session,
    SessionCodec,
    access,
    csrf_valid,
    may_read,
)

log = structlog.get_logger(__name__)

#: how long an action waits for the leader before it answers "pending" (and polls on)
COMMAND_WAIT_SECONDS = 5.0
HOME = "/ui/jobs"
LOGIN = "/ui/login"
#: what a visitor reaches without a login even under read protection
OPEN_PATHS = frozenset({LOGIN, "/ui/logout"})
LIVE_PREFIX = "/ui/live"

E = TypeVar("E", bound=StrEnum)


def _codec(request: Request) -> SessionCodec:
    codec: SessionCodec = request.app.state.ui_sessions
    return codec


def _session(request: Request) -> Session:
    return _codec(request).read(request)


SessionDep = Annotated[Session, Depends(_session)]


def _is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _viewer(request: Request, session: Session, page_url: str) -> Viewer:
    settings: Settings = request.app.state.settings
    return Viewer(
        access=access(session, settings),
        role=session.role,
        logins=settings.api_token is not None or settings.api_read_token is not None,
        csrf=session.csrf,
        now=datetime.now(UTC),
        page_url=page_url,
    )


def _page_url(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _show(
    request: Request,
    session: Session,
    template: str,
    *,
    banner: Banner,
    live: bool = True,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page for this request; ``live`` pages connect to their feed under /ui/live."""
    url = _page_url(request)
    return page(
        request,
        _codec(request),
        session,
        template,
        status=status,
        viewer=_viewer(request, session, url),
        banner=banner,
        live_url=LIVE_PREFIX + url.removeprefix("/ui") if live else None,
        oob=False,
        **context,
    )


def _problem(request: Request, status: int, message: str, banner: Banner | None = None) -> Response:
    """An error as a page, or as a message for an htmx request to show in place."""
    session = _session(request)
    if _is_htmx(request):
        return page(
            request,
            _codec(request),
            session,
            "partials/problem.html",
            status=status,
            message=message,
        )
    return _show(
        request,
        session,
        "problem.html",
        banner=banner or Banner(),
        live=False,
        status=status,
        message=message,
    )


def _refuse_reader(request: Request) -> Response:
    """A visitor without a login, under read protection: the login page, or a 401 in place."""
    if (
        request.method == "GET"
        and not _is_htmx(request)
        and not request.url.path.startswith(LIVE_PREFIX)
    ):
        return RedirectResponse(
            f"{LOGIN}?{urlencode({'next': _page_url(request)})}", status_code=303
        )
    return _problem(request, 401, "Reading needs a login on this server; log in and reload.")


class UiRoute(APIRoute):
    """Answers errors as HTML pages, where the API's routes answer JSON, and keeps every
    page but the login behind a login when read protection is on."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        public = self.path in OPEN_PATHS

        async def handle(request: Request) -> Response:
            if not public and not may_read(_session(request), request.app.state.settings):
                return _refuse_reader(request)
            try:
                return await handler(request)
            except BackendError as error:
                return _problem(
                    request, 503, "The page cannot be read now; retry shortly.", outage(error)
                )
            except ApiError as error:
                return _problem(request, error.status, error.message)
            except RequestValidationError as error:
                message, _ = describe_validation(error.errors())
                return _problem(request, 400, message)

        return handle


router = APIRouter(prefix="/ui", include_in_schema=False, route_class=UiRoute)


def _choice(kind: type[E], value: str | None, name: str) -> E | None:
    """An enum from a query parameter; empty means no filter."""
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise ApiError(400, "bad_request", f"{name} {value!r} is not one of: {choices}") from None


def _job_filters(
    state: str | None = None,
    tag: str | None = None,
    outcome: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
) -> JobFilters:
    """The jobs page's filters, from its query string (a form's empty fields: no filter)."""
    return JobFilters(
        state=_choice(JobState, state, "state"),
        tag=tag.strip() or None if tag else None,
        outcome=_choice(Outcome, outcome, "outcome"),
        text=q.strip() or None if q else None,
        cursor=cursor or None,
    )


def _history_filter(outcome: str | None = None, cursor: str | None = None) -> HistoryFilter:
    return HistoryFilter(_choice(Outcome, outcome, "outcome"), cursor or None)


JobFiltersDep = Annotated[JobFilters, Depends(_job_filters)]
HistoryFilterDep = Annotated[HistoryFilter, Depends(_history_filter)]


def _command(backend: Backend, command_id: str | None) -> CommandOut | None:
    """The command a form just queued, shown on the page it returned to (no JavaScript)."""
    if not command_id:
        return None
    command = backend.get_command(command_id)
    return command_out(command, backend.get_job(command.job_id)) if command else None


def _lease(request: Request) -> float:
    settings: Settings = request.app.state.settings
    return settings.leader_lease_seconds


# pages -----------------------------------------------------------------------------------
@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get("/jobs")
def jobs(
    request: Request,
    session: SessionDep,
    backend: BackendDep,
    filters: JobFiltersDep,
    command: str | None = None,
) -> HTMLResponse:
    banner, _ = scheduler_state(backend, _lease(request))
    return _show(
        request,
        session,
        "jobs.html",
        banner=banner,
        listing=jobs_page(backend, filters),
        command=_command(backend, command),
    )


@router.get("/jobs/{job_id}")
def job(
    request: Request,
    session: SessionDep,
    backend: BackendDep,
    job_id: str,
    history: HistoryFilterDep,
    command: str | None = None,
) -> HTMLResponse:
    data = job_page_data(backend, job_id, history)
    if data is None:
        raise ApiError(404, "not_found", f"There is no job with id {job_id!r} (any more).")
    banner, _ = scheduler_state(backend, _lease(request))
    return _show(
        request, session, "job.html", banner=banner, data=data, command=_command(backend, command)
    )


@router.get("/runs/{run_id}")
def run(request: Request, session: SessionDep, backend: BackendDep, run_id: str) -> HTMLResponse:
    data = run_page_data(backend, run_id)
    if data is None:
        raise ApiError(
            404,
            "not_found",
            f"There is no run with id {run_id!r}; runs older than the retention period are pruned.",
        )
    banner, _ = scheduler_state(backend, _lease(request))
    return _show(request, session, "run.html", banner=banner, data=data)


@router.get("/instances")
def instances(request: Request, session: SessionDep, backend: BackendDep) -> HTMLResponse:
    banner, status = scheduler_state(backend, _lease(request))
    return _show(
        request, session, "instances.html", banner=banner, data=instances_page(backend, status)
    )


@router.get("/job-counts")
def job_counts(request: Request, session: SessionDep, backend: BackendDep) -> HTMLResponse:
    """How many jobs there are in each state, a fragment the jobs page loads after itself."""
    counts = backend.count_jobs()
    return page(request, _codec(request), session, "partials/job_counts.html", counts=counts)


@router.get("/commands/{command_id}")
def command_state(
    request: Request, session: SessionDep, backend: BackendDep, command_id: str
) -> HTMLResponse:
    """A command's result as a fragment; htmx polls it while the command is pending."""
    shown = _command(backend, command_id)
    if shown is None:
        raise ApiError(404, "not_found", f"There is no command with id {command_id!r}.")
    return page(request, _codec(request), session, "partials/command.html", command=shown)


# live feeds: one per page, the page's path under /ui/live ---------------------------------
#: what a page's feed re-reads each tick, given who is looking and the schedulers' state
LiveRead = Callable[[Viewer, SchedulerStatus], list[Fragment | Rows]]


def _live(
    request: Request, session: Session, backend: Backend, read: LiveRead
) -> StreamingResponse:
    """The feed of the page at this path without ``/live``, its banner included."""
    page_url = _page_url(request).replace(LIVE_PREFIX, "/ui", 1)
    lease = _lease(request)

    def tick_parts() -> list[Fragment | Rows]:
        banner, status = scheduler_state(backend, lease)
        return [banner_fragment(banner), *read(_viewer(request, session, page_url), status)]

    return StreamingResponse(
        stream(PageFeed(tick_parts), request.is_disconnected, poll_seconds=POLL_SECONDS),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _fragment(element_id: str, template: str, **context: Any) -> Fragment:
    return Fragment(element_id, render(template, oob=True, **context))


@router.get("/live/jobs")
def live_jobs(
    request: Request, session: SessionDep, backend: BackendDep, filters: JobFiltersDep
) -> StreamingResponse:
    # the page's rows, found once: a row stays while the page is open, whatever changes
    shown = [row.job_id for row in jobs_page(backend, filters).rows]

    def read(viewer: Viewer, status: SchedulerStatus) -> list[Fragment | Rows]:
        return [
            _fragment(f"job-{row.job_id}", "partials/job_row.html", row=row, viewer=viewer)
            for row in job_rows(backend, shown)
        ]

    return _live(request, session, backend, read)


@router.get("/live/jobs/{job_id}")
def live_job(
    request: Request,
    session: SessionDep,
    backend: BackendDep,
    job_id: str,
    history: HistoryFilterDep,
) -> StreamingResponse:
    def read(viewer: Viewer, status: SchedulerStatus) -> list[Fragment | Rows]:
        data = job_page_data(backend, job_id, history)
        parts: list[Fragment | Rows] = [
            _fragment("job-status", "partials/job_status.html", data=data, viewer=viewer)
        ]
        # later pages of the history stay as they are; the first grows as runs happen
        if data is not None and history.cursor is None:
            runs = data.runs.items
            rows = [
                (
                    f"run-{item.run_id}",
                    render("partials/run_row.html", run=item, viewer=viewer, oob=False),
                    render("partials/run_row.html", run=item, viewer=viewer, oob=True),
                )
                for item in runs
            ]
            whole = render("partials/run_rows.html", runs=runs, viewer=viewer, oob=True)
            parts.append(Rows(body_id="job-runs", whole=whole, rows=rows))
        return parts

    return _live(request, session, backend, read)


@router.get("/live/runs/{run_id}")
def live_run(
    request: Request, session: SessionDep, backend: BackendDep, run_id: str
) -> StreamingResponse:
    def read(viewer: Viewer, status: SchedulerStatus) -> list[Fragment | Rows]:
        data = run_page_data(backend, run_id)
        return [_fragment("run-detail", "partials/run_detail.html", data=data, viewer=viewer)]

    return _live(request, session, backend, read)


@router.get("/live/instances")
def live_instances(request: Request, session: SessionDep, backend: BackendDep) -> StreamingResponse:
    def read(viewer: Viewer, status: SchedulerStatus) -> list[Fragment | Rows]:
        data = instances_page(backend, status)
        return [_fragment("instances", "partials/instances.html", data=data, viewer=viewer)]

    return _live(request, session, backend, read)


# login -----------------------------------------------------------------------------------
def _local(target: str | None, default: str = HOME) -> str:
    """``target`` if it is a path of the UI, else ``default``: never redirect elsewhere."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui") or "\\" in target:
        return default
    return target


def _refuse_csrf(request: Request) -> Response:
    log.warning("ui.csrf_refused", path=request.url.path)
    return _problem(
        request,
        403,
        "This form has expired or did not come from this site. Reload the page and try again.",
    )


def _submitted_csrf(request: Request, field: str | None) -> str | None:
    """The token of an htmx request (a header) or of a plain form (a field)."""
    return request.headers.get(CSRF_HEADER) or field


def _login_page(
    request: Request,
    session: Session,
    next_url: str,
    *,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    return _show(
        request,
        session,
        "login.html",
        banner=Banner(),
        live=False,
        status=status,
        next_url=next_url,
        error=error,
    )


@router.get("/login")
def login_form(request: Request, session: SessionDep, next: str | None = None) -> HTMLResponse:
    return _login_page(request, session, _local(next))


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Form()] = "",
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
    next: Annotated[str | None, Form()] = None,
) -> Response:
    if not csrf_valid(session, csrf):
        return _refuse_csrf(request)
    target = _local(next)
    if settings.api_token is None and settings.api_read_token is None:
        # the page says that logins are disabled, and why
        return _login_page(request, session, target, status=403)
    role = _codec(request).role_for(token)
    if role is None:
        log.warning("ui.login_refused", client=request.client.host if request.client else None)
        return _login_page(
            request, session, target, status=401, error="That is not a token of this server."
        )
    log.info("ui.login", role=role.value)
    response = RedirectResponse(target, status_code=303)
    _codec(request).write(request, response, _codec(request).logged_in(role))
    return response


@router.post("/logout")
def logout(
    request: Request,
    session: SessionDep,
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
) -> Response:
    if not csrf_valid(session, csrf):
        return _refuse_csrf(request)
    response = RedirectResponse(HOME, status_code=303)
    _codec(request).write(request, response, _codec(request).logged_in(None))
    return response


# actions ---------------------------------------------------------------------------------
def _with_command(target: str, command_id: str) -> str:
    parts = urlsplit(target)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "command"]
    return parts._replace(query=urlencode([*query, ("command", command_id)])).geturl()


@router.post("/jobs/{job_id}/{action_name}")
async def act(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    backend: BackendDep,
    job_id: str,
    action_name: str,
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
    confirmed: Annotated[str | None, Form()] = None,
    return_to: Annotated[str | None, Form()] = None,
) -> Response:
    """Queue the action's command, as ``POST /api/v1/jobs/{id}/...`` does.

    Without JavaScript the form arrives unconfirmed and gets a confirmation page first;
    with htmx the browser asked already and the answer is a fragment for the page.
    """
    action = ACTIONS.get(action_name)
    if action is None:
        raise ApiError(404, "not_found", f"There is no action {action_name!r}.")
    if not csrf_valid(session, _submitted_csrf(request, csrf)):
        return _refuse_csrf(request)
    allowed = access(session, settings)
    if not allowed.may_change:
        return _problem(request, 403, allowed.reason or "Changes are not allowed.")
    job = await run_in_threadpool(require_job, backend, job_id)
    target = _local(return_to, HOME if action.ends_job else f"/ui/jobs/{job_id}")
    if confirmed != "yes":
        banner, _ = await run_in_threadpool(scheduler_state, backend, settings.leader_lease_seconds)
        return _show(
            request,
            session,
            "confirm.html",
            banner=banner,
            live=False,
            job=job,
            action=action,
            return_to=target,
        )
    command = await submit(backend, Command(kind=action.kind, job_id=job_id), COMMAND_WAIT_SECONDS)
    log.info("ui.command", kind=command.kind.value, job_id=job_id, command_id=command.id)
    if not _is_htmx(request):
        return RedirectResponse(_with_command(target, command.id), status_code=303)
    return page(
        request,
        _codec(request),
        session,
        "partials/command.html",
        command=command_out(command, job),
    )


@router.get("/{path:path}")
def unknown(request: Request, path: str) -> Response:
    return _problem(request, 404, f"There is no page /ui/{path}.")


def install_ui(app: FastAPI, settings: Settings) -> None:
    """Serve the UI and its static files from ``app``."""
    app.state.ui_sessions = SessionCodec(settings)
    static = Path(__file__).with_name("static")
    # mounted before the router, whose last route answers every other /ui path with a 404
    app.mount(STATIC_PREFIX, StaticFiles(directory=static), name="ui-static")
    app.include_router(router)
