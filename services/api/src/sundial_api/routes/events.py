"""Server-sent events: runs starting and finishing, jobs changing."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from sundial_api.deps import READ_RESPONSES, READERS_ONLY, BackendDep
from sundial_api.events import EventFeed, stream

router = APIRouter(
    prefix="/api/v1/events", tags=["events"], responses=READ_RESPONSES, dependencies=READERS_ONLY
)


@router.get(
    "",
    summary="Live feed (text/event-stream)",
    description="Events `run.started`, `run.finished`, `job.added`, `job.changed`, "
    "`job.removed`, `backend.unavailable`, `backend.available`; each `data:` is JSON. "
    "A `: keepalive` comment is sent every 15 s when nothing happens.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def events(request: Request, backend: BackendDep) -> StreamingResponse:
    feed = EventFeed(backend)
    # prime before answering so that nothing after the client's connect is missed; the
    # stream itself is async and polls the feed from worker threads
    feed.prime()
    return StreamingResponse(
        stream(feed, request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
