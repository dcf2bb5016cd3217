"""Webhook sink for the compose stack: stands in for Slack and the dead man's switch.

Alertmanager's default webhook URLs (deploy/alertmanager/alertmanager.yml) point here, so
alerts are visible without any outside service: each POST is logged as one JSON line
(`make logs` shows them) and the last few are listed by GET /messages.
"""

import json
import os
import sys
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("WEBHOOK_SINK_PORT", "8080"))
KEPT: deque[dict[str, object]] = deque(maxlen=200)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = body.decode("utf-8", "replace")
        message = {"path": self.path, "payload": payload}
        KEPT.append(message)
        sys.stdout.write(json.dumps(message, sort_keys=True) + "\n")
        sys.stdout.flush()
        self.reply(200, {"ok": True})

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.reply(200, {"ok": True})
        else:
            self.reply(200, {"messages": list(KEPT)})

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
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
