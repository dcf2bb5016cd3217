"""The API service: ``create_app(settings)`` and the ``sundial-api`` entrypoint.

Run with ``sundial-api`` or ``uvicorn --factory sundial_api.main:create_app --port 8000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

import sundial
from sundial.backends import Backend, BackendError, open_backend
from sundial.config import Settings, get_settings
from sundial.logging import configure_logging
from sundial.metrics import process_registry
from sundial_api.deps import READ_SCHEME
from sundial_api.errors import install_error_handlers
from sundial_api.metrics import CatalogCollector, HttpMetrics, HttpMetricsMiddleware
from sundial_api.middleware import RequestLimitsMiddleware
from sundial_api.routes import (
    commands,
    events,
    health,
    jobs,
    metrics,
    runbook,
    runs,
    scheduler,
    triggers,
    workers,
)
from sundial_api.ui.routes import install_ui

log = structlog.get_logger(__name__)

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8000
#: while the backend is unreachable at start-up, retry its setup this often
SETUP_RETRY_SECONDS = 5.0


async def _set_up(backend: Backend) -> None:
    """Create or migrate the backend schema, retrying while the backend is unreachable.

    The API keeps serving meanwhile: health answers unhealthy and reads answer 503.
    """
    while True:
        try:
            await run_in_threadpool(backend.setup)
        except BackendError as error:
            log.warning("backend_setup_failed", error=str(error), retry_in=SETUP_RETRY_SECONDS)
            await asyncio.sleep(SETUP_RETRY_SECONDS)
        else:
            log.info("backend_ready", backend=backend.kind)
            return


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    given: Backend | None = app.state.given_backend
    backend = given or open_backend(settings.backend_url)
    app.state.backend = backend
    setup = asyncio.create_task(_set_up(backend))
    # a reachable backend is set up before the first request is served
    await asyncio.wait({setup}, timeout=SETUP_RETRY_SECONDS)
    try:
        yield
    finally:
        setup.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await setup
        app.state.backend = None
        if given is None:
            await run_in_threadpool(backend.close)


def _document_read_protection(app: FastAPI, settings: Settings) -> None:
    """Make the OpenAPI schema say what this server asks of readers: a token only under
    read protection, nothing otherwise (the routes carry the read scheme either way)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            if not settings.reads_protected:
                _drop_security_scheme(schema, READ_SCHEME)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


def _drop_security_scheme(schema: dict[str, Any], name: str) -> None:
    schema.get("components", {}).get("securitySchemes", {}).pop(name, None)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            kept = [need for need in operation.get("security", ()) if name not in need]
            if kept:
                operation["security"] = kept
            else:
                operation.pop("security", None)
                operation.get("responses", {}).pop("401", None)


def create_app(settings: Settings | None = None, *, backend: Backend | None = None) -> FastAPI:
    """The API application; the backend is opened when the app starts, not here.

    Without ``settings`` it reads them from the environment, as under ``uvicorn --factory``.
    ``backend`` replaces the one named by ``settings.backend_url`` (tests); the caller
    keeps ownership and closes it.
    """
    settings = settings or get_settings()
    app = FastAPI(
        title="Sundial API",
        version=sundial.__version__,
        description="Watch and manage Sundial jobs. Changes are queued as commands that "
        "the scheduler leader applies; they need `Authorization: Bearer $SUNDIAL_API_TOKEN`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.given_backend = backend
    app.state.backend = None
    # process_* too: the memory alert and the dashboard's resources row watch the API.
    registry = process_registry()
    app.state.registry = registry
    registry.register(
        CatalogCollector(
            lambda: app.state.backend,
            workers=settings.executor == "queue",
            lease_seconds=settings.leader_lease_seconds,
        )
    )
    install_error_handlers(app)
    app.add_middleware(RequestLimitsMiddleware)
    # outermost, so that refused and failed requests are counted too
    app.add_middleware(HttpMetricsMiddleware, metrics=HttpMetrics(registry))
    routers = (health, jobs, runs, commands, scheduler, workers, events, metrics, triggers, runbook)
    for module in routers:
        app.include_router(module.router)
    install_ui(app, settings)
    _document_read_protection(app, settings)
    return app


def main() -> None:
    """``sundial-api``: serve the API with uvicorn."""
    parser = argparse.ArgumentParser(prog="sundial-api", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    settings = get_settings()
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_config=None, proxy_headers=True
    )
