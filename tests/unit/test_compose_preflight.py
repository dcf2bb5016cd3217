"""`make up`'s preflight (deploy/compose/preflight.py) and the links the stack's Prometheus
renders (deploy/prometheus/render-links.sh)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import monitoring_tools
import pytest
import yaml
from deploy_modules import DEPLOY, load_deploy_module

COMPOSE = DEPLOY / "compose"
FILES = [COMPOSE / "compose.yaml"]
WITH_BACKENDS = [*FILES, COMPOSE / "backends-on-host.yaml"]
preflight = load_deploy_module("preflight", "compose/preflight.py")


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another program listens on, as a developer's own Grafana would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_preflight(
    env: dict[str, str], files: list[Path], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(COMPOSE / "preflight.py"),
            "--project",
            "sundial-unit",
            *args,
            "--env-file",
            "/nonexistent.env",
            *map(str, files),
        ],
        env={k: v for k, v in os.environ.items() if not k.endswith("_PORT")} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def port_variables(files: list[Path], profiles: tuple[str, ...] = ()) -> set[str]:
    texts = [path.read_text(encoding="utf-8") for path in files]
    return {p.variable for p in preflight.published_ports(texts, profiles)}


def test_a_taken_port_is_named_with_its_service_and_variable(held_port: int) -> None:
    env = {name: str(free_port()) for name in port_variables(FILES)} | {
        "GRAFANA_PORT": str(held_port)
    }
    result = run_preflight(env, FILES)
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert line.split()[:4] == [str(held_port), "grafana", "set", "GRAFANA_PORT"]
    assert "Nothing was started." in result.stderr


def test_free_ports_pass_silently() -> None:
    env = {name: str(free_port()) for name in port_variables(FILES)}
    result = run_preflight(env, FILES)
    assert (result.returncode, result.stderr) == (0, "")


def test_the_machines_own_postgres_and_redis_ports_are_no_obstacle(held_port: int) -> None:
    env = {name: str(free_port()) for name in port_variables(FILES)}
    env |= {"POSTGRES_PORT": str(held_port), "REDIS_PORT": str(held_port)}
    assert run_preflight(env, FILES, "--profile", "redis").returncode == 0
    # Asked to publish them, the stack would collide: said before anything starts.
    result = run_preflight(env, WITH_BACKENDS, "--profile", "redis")
    assert result.returncode == 1
    assert "POSTGRES_PORT" in result.stderr and "REDIS_PORT" in result.stderr


def test_redis_is_checked_only_with_its_profile() -> None:
    assert "REDIS_PORT" not in port_variables(WITH_BACKENDS)
    assert "REDIS_PORT" in port_variables(WITH_BACKENDS, ("redis",))


def test_ports_the_project_already_publishes_are_its_own(held_port: int) -> None:
    (api,) = [
        p for p in preflight.published_ports([FILES[0].read_text()], ()) if p.variable == "API_PORT"
    ]
    env = {"API_PORT": str(held_port)}
    assert preflight.taken_ports([api], env, own=set()) == [preflight.Taken(api, held_port)]
    assert preflight.taken_ports([api], env, own={held_port}) == []


def test_the_line_reader_finds_every_published_port_yaml_does() -> None:
    expected = set()
    for path in WITH_BACKENDS:
        for name, service in yaml.safe_load(path.read_text(encoding="utf-8"))["services"].items():
            for port in service.get("ports", []):
                expected.add((name, port.split("${")[1].split(":-")[0]))
    texts = [path.read_text(encoding="utf-8") for path in WITH_BACKENDS]
    found = {(p.service, p.variable) for p in preflight.published_ports(texts, ("redis",))}
    assert found == expected


def test_a_port_that_is_no_number_is_refused() -> None:
    env = {name: str(free_port()) for name in port_variables(FILES)} | {"API_PORT": "eighty"}
    result = run_preflight(env, FILES)
    assert result.returncode == 1
    assert "API_PORT must be a port number, not 'eighty'" in result.stderr


# --- render-links.sh ---------------------------------------------------------------------

PROMETHEUS = DEPLOY / "prometheus"


def render_links(env: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SUNDIAL_", "API_PORT", "GRAFANA_PORT"))
    }
    return subprocess.run(
        ["sh", str(PROMETHEUS / "render-links.sh"), str(PROMETHEUS), str(out)],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def annotations(rule_file: Path) -> list[dict[str, str]]:
    groups = yaml.safe_load(rule_file.read_text(encoding="utf-8"))["groups"]
    return [r["annotations"] for g in groups for r in g["rules"] if "alert" in r]


def test_the_default_links_are_the_stacks_own(tmp_path: Path) -> None:
    assert render_links({}, tmp_path).returncode == 0
    for path in (PROMETHEUS / "rules").glob("*.yml"):
        assert (tmp_path / "rules" / path.name).read_text() == path.read_text()


def test_links_follow_the_published_ports_and_the_configured_urls(tmp_path: Path) -> None:
    result = render_links(
        {"API_PORT": "18000", "SUNDIAL_GRAFANA_URL": "https://grafana.example.org/"}, tmp_path
    )
    assert result.returncode == 0, result.stderr
    notes = annotations(tmp_path / "rules" / "sundial.yml")
    assert notes
    for note in notes:
        assert note["runbook_url"].startswith("http://localhost:18000/runbook#")
        assert note["dashboard_url"].startswith("https://grafana.example.org/d/sundial-overview")
    check = subprocess.run(
        [
            *monitoring_tools.command("promtool"),
            "check",
            "config",
            str(tmp_path / "prometheus.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("url", ["wiki.example.org/runbook", 'http://x/"quoted"', "http://x/a b"])
def test_a_link_base_prometheus_could_not_use_is_refused(url: str, tmp_path: Path) -> None:
    result = render_links({"SUNDIAL_RUNBOOK_URL": url}, tmp_path)
    assert result.returncode == 1
    assert "SUNDIAL_RUNBOOK_URL must" in result.stderr
