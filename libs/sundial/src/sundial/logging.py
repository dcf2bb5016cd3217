"""structlog configuration: one JSON object per event (or console lines for development)."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys

import structlog

#: the thread that writes log lines for processes configured with ``write_behind``
_listener: logging.handlers.QueueListener | None = None


class _RecordQueueHandler(logging.handlers.QueueHandler):
    """Queues the record as it is: the writing thread renders it, not the caller."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


@atexit.register
def _finish_writing() -> None:
    """Write out what is still queued (at exit, or before logging is configured again)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


def configure_logging(
    *, log_format: str = "json", level: str = "INFO", write_behind: bool = False
) -> None:
    """Route structlog and stdlib logging (APScheduler, uvicorn) through one renderer.

    With ``write_behind``, lines are rendered and written by a thread of their own: a
    scheduler logs a line per run, and writing each from the event loop costs it a system
    call (and a wait for the GIL) every time. The thread writes what is queued before
    the process exits.
    """
    global _listener
    _finish_writing()
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            # Where the exception is current: a line written behind is rendered later.
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if write_behind:
        lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        _listener = logging.handlers.QueueListener(lines, handler)
        _listener.start()
        root.handlers[:] = [_RecordQueueHandler(lines)]
    root.setLevel(level)
    # Sundial logs and records runs itself, skipped and missed ones included; APScheduler's
    # own lines about them would say everything twice.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("apscheduler.scheduler").setLevel(max(logging.ERROR, root.level))
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
