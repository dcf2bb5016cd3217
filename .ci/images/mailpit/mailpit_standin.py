"""Mailpit stand-in for CI: an SMTP sink with a sliver of Mailpit's HTTP API.

``mailpit_standin.py``          serve SMTP on :1025 and HTTP on :8025
``mailpit_standin.py readyz``   exit 0 when the HTTP side answers (healthcheck)

Each message is kept in memory and written to /data as ``<n>.eml``. Plain SMTP only: no
AUTH and no STARTTLS are offered, so clients configured without them send in clear.
"""

import email
import email.policy
import json
import socketserver
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SMTP_PORT = 1025
HTTP_PORT = 8025
STORE = Path("/data")
MESSAGES: list[dict[str, object]] = []
LOCK = threading.Lock()


def log(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def keep(sender: str, recipients: list[str], raw: bytes) -> None:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    with LOCK:
        number = len(MESSAGES) + 1
        MESSAGES.append(
            {
                "ID": str(number),
                "From": {"Address": sender},
                "To": [{"Address": r} for r in recipients],
                "Subject": str(parsed.get("Subject", "")),
                "Created": str(parsed.get("Date", "")),
                "Snippet": _text(parsed)[:200],
            }
        )
    (STORE / f"{number}.eml").write_bytes(raw)
    log(f"smtp: message {number} from {sender} to {recipients}")


def _text(message: email.message.Message) -> str:
    body = message.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
    return body.get_content() if body is not None else ""


class SMTPHandler(socketserver.StreamRequestHandler):
    def send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        sender = ""
        recipients: list[str] = []
        self.send("220 mailpit-standin ESMTP")
        while line := self.rfile.readline():
            verb, _, arg = line.decode("utf-8", "replace").strip().partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.send("250-mailpit-standin")
                self.send("250-8BITMIME")
                self.send("250 SIZE 10485760")
            elif verb == "HELO":
                self.send("250 mailpit-standin")
            elif verb == "MAIL":
                sender, recipients = arg.partition(":")[2].strip().split(" ")[0].strip("<>"), []
                self.send("250 OK")
            elif verb == "RCPT":
                recipients.append(arg.partition(":")[2].strip().strip("<>"))
                self.send("250 OK")
            elif verb == "DATA":
                self.send("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)
                keep(sender, recipients, b"".join(lines))
                self.send("250 OK: queued")
            elif verb in ("RSET", "NOOP"):
                self.send("250 OK")
            elif verb == "QUIT":
                self.send("221 Bye")
                return
            else:
                self.send("502 Command not implemented")


class HTTPHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path in ("/readyz", "/livez"):
            self.reply(200, "ok")
        elif self.path.startswith("/api/v1/messages"):
            with LOCK:
                newest_first = list(reversed(MESSAGES))
            self.reply(
                200,
                {"total": len(newest_first), "count": len(newest_first), "messages": newest_first},
            )
        else:
            self.reply(200, {"message": "CI stand-in for Mailpit: GET /api/v1/messages"})

    def reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class SMTPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main(argv: list[str]) -> int:
    if argv[1:2] == ["readyz"]:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/readyz", timeout=3)
        except OSError:
            return 1
        return 0
    smtp = SMTPServer(("0.0.0.0", SMTP_PORT), SMTPHandler)
    threading.Thread(target=smtp.serve_forever, daemon=True).start()
    log(f"mailpit stand-in: SMTP :{SMTP_PORT}, HTTP :{HTTP_PORT}")
    ThreadingHTTPServer(("0.0.0.0", HTTP_PORT), HTTPHandler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
