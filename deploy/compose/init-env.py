#!/usr/bin/env python3
"""Write the compose stack's ``.env`` from ``.env.example``, with secrets of its own.

``make up`` runs this when the env file is missing, so that no two stacks share a
password: every variable in ``SECRETS`` gets a fresh random value, and a ``${NAME}`` in
any other value (the backend URLs that carry a password) is replaced with the value of
``NAME``. An existing file is never touched. Standard library only: it runs before
anything is installed.

    python3 deploy/compose/init-env.py [--example .env.example] .env
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

#: the variables that get a fresh random value; all other values are kept as written
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "SUNDIAL_API_TOKEN")
#: 32 random bytes: far past guessing, and URL-safe, so it fits into a backend URL as is
SECRET_BYTES = 32
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")
_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")


def render(example: str, secret: dict[str, str]) -> str:
    """``example`` with each of ``secret``'s variables set and ``${…}`` references resolved."""
    values: dict[str, str] = {}
    lines = []
    for line in example.splitlines():
        match = _ASSIGNMENT.match(line)
        if match is None:
            lines.append(line)
            continue
        name, value = match["name"], match["value"]
        if name in secret:
            value = secret[name]
        value = _REFERENCE.sub(lambda ref, where=name: _resolve(ref["name"], values, where), value)
        values[name] = value
        lines.append(f"{name}={value}")
    missing = sorted(set(secret) - set(values))
    if missing:
        raise SystemExit(f"init-env: the example file does not set {', '.join(missing)}")
    return "\n".join(lines) + "\n"


def _resolve(reference: str, values: dict[str, str], where: str) -> str:
    if reference not in values:
        raise SystemExit(f"init-env: {where} refers to ${{{reference}}}, which is not set above it")
    return values[reference]


def fresh_secrets() -> dict[str, str]:
    return {name: secrets.token_urlsafe(SECRET_BYTES) for name in SECRETS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_file", type=Path, help="the file to write, e.g. .env")
    parser.add_argument("--example", type=Path, default=Path(".env.example"))
    args = parser.parse_args(argv)
    target: Path = args.env_file
    if target.exists():
        print(f"{target} exists; leaving it as it is")  # noqa: T201
        return 0
    text = render(args.example.read_text(encoding="utf-8"), fresh_secrets())
    # created readable by its owner only, and never over a file that appeared meanwhile
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    print(  # noqa: T201
        f"wrote {target} with new random passwords; the API token (log in to the UI and "
        f"change jobs with it) is SUNDIAL_API_TOKEN in {target}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
