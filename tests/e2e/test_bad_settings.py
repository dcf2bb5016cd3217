"""Bad settings stop the real entry points at once, with one line naming the variable."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

#: a process that refuses its settings does so before it reaches anything slow
EXIT_WITHIN_SECONDS = 60
#: the installed commands, beside the interpreter running the suite
BIN = Path(sys.executable).parent
SCHEDULER = [str(BIN / "sundial-scheduler")]
API = [str(BIN / "sundial-api"), "--port", "0"]
CLI = [str(BIN / "sundial"), "jobs", "list"]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port that something else listens on."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def refusal(command: list[str], tmp_path: Path, **variables: str) -> str:
    """Run ``command`` with ``variables`` set; it must exit 2, and its one line is returned."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUNDIAL_")}
    env |= {"SUNDIAL_BACKEND_URL": f"sqlite:///{tmp_path / 'sundial.db'}", **variables}
    done = subprocess.run(
        command,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=EXIT_WITHIN_SECONDS,
        check=False,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_an_unresolvable_metrics_host_is_named(tmp_path: Path) -> None:
    line = refusal(SCHEDULER, tmp_path, SUNDIAL_METRICS_HOST="no-such-host.invalid")
    assert line.startswith("invalid configuration: SUNDIAL_METRICS_HOST: cannot resolve")


def test_a_metrics_host_of_another_machine_is_named(tmp_path: Path) -> None:
    # 192.0.2.0/24 is reserved for documentation: never an address of this machine
    line = refusal(SCHEDULER, tmp_path, SUNDIAL_METRICS_HOST="192.0.2.1", SUNDIAL_METRICS_PORT="0")
    assert line.startswith("invalid configuration: SUNDIAL_METRICS_HOST: cannot listen on")


def test_a_metrics_port_in_use_is_named(tmp_path: Path, taken_port: int) -> None:
    line = refusal(SCHEDULER, tmp_path, SUNDIAL_METRICS_PORT=str(taken_port))
    assert line == (
        f"invalid configuration: SUNDIAL_METRICS_PORT: port {taken_port} is already in use "
        "on 0.0.0.0; pick another port"
    )


def test_an_instance_id_longer_than_the_backend_keeps_is_named(tmp_path: Path) -> None:
    line = refusal(SCHEDULER, tmp_path, SUNDIAL_INSTANCE_ID="x" * 192)
    assert line == (
        "invalid configuration: SUNDIAL_INSTANCE_ID: String should have at most 191 characters"
    )


@pytest.mark.parametrize("command", [SCHEDULER, API, CLI], ids=["scheduler", "api", "cli"])
def test_a_misspelt_setting_is_named_with_the_one_meant(tmp_path: Path, command: list[str]) -> None:
    line = refusal(command, tmp_path, SUNDIAL_METRICS_PROT="9100")
    assert line == (
        "invalid configuration: SUNDIAL_METRICS_PROT: no such setting; "
        "did you mean SUNDIAL_METRICS_PORT?"
    )


def test_the_cli_names_a_bad_api_url(tmp_path: Path) -> None:
    line = refusal(CLI, tmp_path, SUNDIAL_API_URL="not-a-url")
    assert line == (
        "invalid configuration: SUNDIAL_API_URL: 'not-a-url' is not an http:// or https:// "
        "URL with a host"
    )
