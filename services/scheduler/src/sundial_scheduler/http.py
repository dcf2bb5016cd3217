"""``/metrics``, ``/healthz`` and ``/readyz`` on the scheduler's metrics port."""

from __future__ import annotations

import errno
import json
import socket
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from sundial.config import ConfigurationError

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    """A small threaded HTTP server; ``port=0`` picks a free port (see :attr:`port`).

    ``host_setting`` and ``port_setting`` name the variables behind ``host`` and ``port``,
    for the :class:`ConfigurationError` raised when the server cannot bind.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        exposition: Callable[[], Iterable[bytes]],
        alive: HealthCheck,
        ready: HealthCheck,
        host_setting: str = "SUNDIAL_METRICS_HOST",
        port_setting: str = "SUNDIAL_METRICS_PORT",
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes | Iterable[bytes]]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, exposition()),
            "/healthz": lambda: _json(*alive()),
            "/readyz": lambda: _json(*ready()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                status, content_type, body = (
                    route() if route else (404, "text/plain", b"not found\n")
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                # Streamed as it is rendered, so a large scrape never sits in memory
                # whole; without a length, the end of the connection ends the body.
                self.close_connection = True
                self.end_headers()
                for chunk in body:
                    self.wfile.write(chunk)

            def log_message(self, format: str, *args: Any) -> None:
                """Scrapes every few seconds would drown the job logs."""

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except socket.gaierror as error:
            raise ConfigurationError(
                host_setting, f"cannot resolve {host!r} ({error.strerror})"
            ) from None
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    port_setting, f"port {port} is already in use on {host}; pick another port"
                ) from None
            raise ConfigurationError(
                host_setting,
                f"cannot listen on {host}:{port} ({error.strerror}); "
                "use an address of this machine, such as 0.0.0.0 or 127.0.0.1",
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sundial-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _json(ok: bool, body: dict[str, Any]) -> tuple[int, str, bytes]:
    return (200 if ok else 503), "application/json", json.dumps(body).encode() + b"\n"
