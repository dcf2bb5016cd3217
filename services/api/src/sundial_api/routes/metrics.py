"""Prometheus exposition of the API's metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.registry
    # a plain def, run in a worker thread: the catalog collector reads the backend
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
