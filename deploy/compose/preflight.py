#!/usr/bin/env python3
"""Before `make up` starts anything: is every host port the stack publishes free?

    preflight.py [--project NAME] [--env-file FILE] [--profile P]... COMPOSE_FILE...

Reads the compose files' ``ports:`` entries (``"127.0.0.1:${API_PORT:-8000}:8000"``),
resolves each variable as Compose does (the environment, then the env file, then the
default) and tries to listen on each port. Ports that this project's own running
containers publish are left out, so a second `make up` passes. Prints one line per taken
port, naming the service and the variable to change, and exits 1; prints nothing and
exits 0 when all are free.

Only the Python standard library: `make up` needs Docker and Python, nothing else. The
compose files are Sundial's own, so a line reader of their fixed layout (two-space
indents, one port per line) does instead of a YAML parser.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
_SERVICE = re.compile(r"^  ([A-Za-z0-9][\w.-]*):\s*$")
_PROFILES = re.compile(r"^    profiles:\s*\[([^\]]*)\]")
_PORT = re.compile(r'^\s+- "?(?:127\.0\.0\.1:)?\$\{(\w+):-(\d+)\}:\d+(?:/\w+)?"?\s*$')
_DOCKER_PORT = re.compile(r"127\.0\.0\.1:(\d+)->")


@dataclass(frozen=True)
class Published:
    """A host port a compose service publishes, from a variable."""

    service: str
    variable: str
    default: int


@dataclass(frozen=True)
class Taken:
    published: Published
    port: int


def published_ports(texts: Iterable[str], profiles: Iterable[str]) -> list[Published]:
    """The published ports of the services that run with ``profiles`` active."""
    found: dict[tuple[str, str], Published] = {}
    service_profiles: dict[str, set[str]] = {}
    for text in texts:
        service = None
        for line in text.splitlines():
            if line and not line.startswith(" "):
                service = None  # a top-level key: `services:` or another
                continue
            if match := _SERVICE.match(line):
                service = match.group(1)
            elif service and (match := _PROFILES.match(line)):
                names = {p.strip().strip("\"'") for p in match.group(1).split(",")}
                service_profiles.setdefault(service, set()).update(names)
            elif service and (match := _PORT.match(line)):
                variable, default = match.group(1), int(match.group(2))
                found[(service, variable)] = Published(service, variable, default)
    active = set(profiles)
    return [
        port
        for port in found.values()
        if not service_profiles.get(port.service) or service_profiles[port.service] & active
    ]


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a Compose env file (comments and blanks skipped)."""
    values = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, sep, value = line.strip().partition("=")
            if sep and not name.startswith("#"):
                values[name.strip()] = value.strip().strip("\"'")
    return values


def is_free(port: int) -> bool:
    """Whether a server may listen on ``HOST:port`` now, as Docker's port proxy would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As Docker does: a port that only lingers in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def own_ports(project: str) -> set[int]:
    """Host ports that running containers of compose project ``project`` publish."""
    try:
        result = subprocess.run(
            [
                "docker",
                "ps",
                "--filter",
                f"label=com.docker.compose.project={project}",
                "--format",
                "{{.Ports}}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return set()  # no Docker: Compose itself will say so
    return {int(port) for port in _DOCKER_PORT.findall(result.stdout)}


def taken_ports(ports: Iterable[Published], env: Mapping[str, str], own: set[int]) -> list[Taken]:
    """The ports that another program holds, in the order given."""
    taken = []
    for published in ports:
        value = env.get(published.variable) or str(published.default)
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise SystemExit(f"make up: {published.variable} must be a port number, not {value!r}")
        port = int(value)
        if port not in own and not is_free(port):
            taken.append(Taken(published, port))
    return taken


def free_port_near(port: int, avoid: set[int]) -> int:
    """The first free port above ``port`` (to suggest one)."""
    for candidate in range(port + 1, min(port + 200, 65536)):
        if candidate not in avoid and is_free(candidate):
            return candidate
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        any_port: int = sock.getsockname()[1]
        return any_port


def report(taken: list[Taken], env_file: str) -> str:
    avoid = {t.port for t in taken}
    lines = [f"make up: {len(taken)} port(s) on {HOST} already in use by another program:"]
    for t in taken:
        suggestion = free_port_near(t.port, avoid)
        avoid.add(suggestion)
        lines.append(
            f"  {t.port:<5}  {t.published.service:<13} set {t.published.variable} in "
            f"{env_file} to a free port, e.g. {t.published.variable}={suggestion}"
        )
    lines.append("Nothing was started.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="sundial")
    parser.add_argument("--env-file", default=".env")
    parser.add_argument("--profile", action="append", default=[])
    parser.add_argument("files", nargs="+", type=Path)
    options = parser.parse_args(argv)
    # Compose's order: the shell's environment wins over the env file.
    env = {**read_env_file(Path(options.env_file)), **os.environ}
    profiles = [*options.profile, *filter(None, env.get("COMPOSE_PROFILES", "").split(","))]
    texts = [path.read_text(encoding="utf-8") for path in options.files]
    taken = taken_ports(published_ports(texts, profiles), env, own_ports(options.project))
    if taken:
        print(report(taken, options.env_file), file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
