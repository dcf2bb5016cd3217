"""What a human would receive: a webhook sink and an SMTP sink, each on a loopback thread.

The webhook sink stands in for Slack (Alertmanager's ``slack_configs`` post a JSON body)
and the dead man's switch; the SMTP sink for the mail server. Both only record.
"""

from __future__ import annotations

import email
import email.policy
import json
import socketserver
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Post:
    received: float
    path: str
    body: dict[str, Any]

    @property
    def titles(self) -> list[str]:
        """Slack attachment titles: ``[FIRING:1] SundialJobFailed payments_sync (critical)``."""
        return [str(a.get("title", "")) for a in self.body.get("attachments", [])]

    @property
    def text(self) -> str:
        return "\n".join(str(a.get("text", "")) for a in self.body.get("attachments", []))


class WebhookSink:
    """An HTTP server that records every POST body (JSON) with its path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._posts: list[Post] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"raw": raw.decode("utf-8", "replace")}
                with sink._lock:
                    sink._posts.append(Post(time.time(), self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> WebhookSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def posts(self, path: str | None = None, *, since: float = 0.0) -> list[Post]:
        with self._lock:
            return [
                p for p in self._posts if (path is None or p.path == path) and p.received >= since
            ]


@dataclass(frozen=True)
class Mail:
    received: float
    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def body(self) -> str:
        """Every text part (Alertmanager sends HTML), decoded."""
        return "\n".join(
            str(part.get_content())
            for part in self.message.walk()
            if isinstance(part, EmailMessage) and part.get_content_maintype() == "text"
        )


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sink: SmtpSink) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.sink = sink


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: _SmtpServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        sender = ""
        recipients: list[str] = []
        self.reply("220 sink ESMTP ready")
        while raw := self.rfile.readline():
            command = raw.decode("utf-8", "replace").strip()
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250-sink greets you")
                self.reply("250 8BITMIME")
            elif verb == "MAIL":
                sender, recipients = _address(command), []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(_address(command))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                self.server.sink.receive(sender, recipients, self._read_data())
                self.reply("250 OK queued")
            elif verb == "RSET":
                sender, recipients = "", []
                self.reply("250 OK")
            elif verb == "NOOP":
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 command not implemented")

    def _read_data(self) -> bytes:
        lines: list[bytes] = []
        while True:
            line = self.rfile.readline()
            if not line or line in (b".\r\n", b".\n"):
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b"..") else line)


class SmtpSink:
    """Just enough SMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) to take mail in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mails: list[Mail] = []
        self._server = _SmtpServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> SmtpSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def receive(self, sender: str, recipients: list[str], data: bytes) -> None:
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self._mails.append(Mail(time.time(), sender, tuple(recipients), message))

    def mails(self, *, since: float = 0.0) -> list[Mail]:
        with self._lock:
            return [m for m in self._mails if m.received >= since]


def _address(command: str) -> str:
    """``MAIL FROM:<a@b>`` -> ``a@b``."""
    _, _, rest = command.partition(":")
    return rest.strip().split(" ")[0].strip("<>")
