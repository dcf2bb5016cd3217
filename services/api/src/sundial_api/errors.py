"""One error body for every 4xx/5xx: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException

from sundial.backends import BackendError

log = structlog.get_logger(__name__)

#: error codes for statuses raised by the framework itself (unknown route, bad method)
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "backend_unavailable",
}
MAX_VALIDATION_DETAILS = 5


class ApiError(Exception):
    """An error answered with ``status`` and a message a person can act on."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_body(
    code: str, message: str, details: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = list(details)
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Sequence[Mapping[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def field_name(loc: Sequence[int | str]) -> str:
    """``("body", "trigger", "cron", "expression")`` -> ``trigger.cron.expression``."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        where, parts = parts[0], parts[1:]
        if where != "body" and parts:
            return f"{where} parameter {'.'.join(parts)!r}"
    return ".".join(parts) or "request body"


def describe_validation(errors: Sequence[Any]) -> tuple[str, list[dict[str, str]]]:
    """A readable summary naming each invalid field, without echoing the input."""
    details = [
        {
            "field": field_name(error.get("loc", ())),
            "message": str(error.get("msg", "invalid")).removeprefix("Value error, "),
        }
        for error in errors
    ]
    shown = details[:MAX_VALIDATION_DETAILS]
    message = "; ".join(f"{d['field']}: {d['message']}" for d in shown)
    if len(details) > len(shown):
        message += f" (and {len(details) - len(shown)} more)"
    return message or "invalid request", details


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}; see /docs"
    if exc.status_code == 405:
        allowed = allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        message = f"{request.method} is not allowed here; use {', '.join(allowed)}"
    return error_response(exc.status_code, code, message, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path: a path's methods may be several routes'."""
    path = request.url.path.removeprefix(request.scope.get("root_path", ""))
    methods: set[str] = set()
    # the routes of included routers too, each with its full path
    for route in iter_route_contexts(request.app.routes):
        pattern = getattr(route, "path_regex", None)
        if route.methods and pattern is not None and pattern.match(path):
            methods |= route.methods
    return sorted(methods)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, details = describe_validation(exc.errors())
    return error_response(422, "validation_error", message, details=details)


async def _backend_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("backend_error", path=request.url.path, error=str(exc))
    return error_response(
        503,
        "backend_unavailable",
        f"the Sundial backend is unavailable: {exc}; retry shortly",
        headers={"Retry-After": "5"},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path, exc_info=exc)
    return error_response(
        500, "internal_error", "the API failed unexpectedly; the error is in its log"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(BackendError, _backend_error)
    app.add_exception_handler(Exception, _unexpected)


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what} with id {ident!r}")
