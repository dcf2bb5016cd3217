"""Grafana stand-in for CI: /api/health and provisioned dashboards by uid, nothing more."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DASHBOARDS = Path(os.environ.get("STANDIN_DASHBOARDS", "/var/lib/grafana/dashboards"))
PORT = int(os.environ.get("GF_SERVER_HTTP_PORT", "3000"))


def dashboards() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        found[board.get("uid", path.stem)] = board
    return found


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/api/health":
            self.reply(200, {"database": "ok", "version": "stand-in", "commit": "none"})
        elif self.path.startswith("/api/dashboards/uid/"):
            board = dashboards().get(self.path.rsplit("/", 1)[1])
            if board is None:
                self.reply(404, {"message": "Dashboard not found"})
            else:
                self.reply(200, {"dashboard": board, "meta": {"provisioned": True}})
        elif self.path.startswith("/api/search"):
            self.reply(
                200,
                [
                    {"uid": uid, "title": b.get("title"), "type": "dash-db"}
                    for uid, b in dashboards().items()
                ],
            )
        else:
            self.reply(200, {"message": "CI stand-in for Grafana: nothing is rendered here"})

    def reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    sys.stdout.write(f"grafana stand-in on :{PORT}, dashboards from {DASHBOARDS}\n")
    sys.stdout.flush()
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
