"""Prometheus's and Alertmanager's programs for the tests: from the PATH, else from images.

``command("promtool")`` is the argv that runs a tool: its binary when one is on the PATH
(Debian's packages, ``.ci/install-monitoring.sh``), otherwise the same program inside
the image the compose stack uses (``PROMETHEUS_IMAGE``, ``ALERTMANAGER_IMAGE``, defaults
from ``deploy/compose/compose.yaml``), run through Docker. A run in Docker sees the
repository and the temporary directory at their own paths and shares the host's network,
so arguments, files and loopback addresses mean what they mean outside it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "deploy" / "compose" / "compose.yaml"


@dataclass(frozen=True)
class Tool:
    #: names the binary goes by on a PATH, preferred first (Debian renames alertmanager)
    names: tuple[str, ...]
    #: the variable naming the image that carries it, as in the compose stack
    image_variable: str
    #: where the binary is inside that image (the upstream images' paths)
    path_in_image: str


TOOLS = {
    "promtool": Tool(("promtool",), "PROMETHEUS_IMAGE", "/bin/promtool"),
    "prometheus": Tool(("prometheus",), "PROMETHEUS_IMAGE", "/bin/prometheus"),
    "amtool": Tool(("amtool",), "ALERTMANAGER_IMAGE", "/bin/amtool"),
    "alertmanager": Tool(
        ("alertmanager", "prometheus-alertmanager"), "ALERTMANAGER_IMAGE", "/bin/alertmanager"
    ),
}
#: every name a harness must hide to make the tests use the images
ALL_NAMES = frozenset(name for tool in TOOLS.values() for name in tool.names)


def image(variable: str) -> str:
    """The image named by ``variable``: from the environment, else the compose default."""
    if os.environ.get(variable):
        return os.environ[variable]
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    match = re.search(rf"\$\{{{variable}:-([^}}]+)\}}", text)
    assert match, f"{COMPOSE_FILE} has no default for {variable}"
    return match.group(1)


def on_path(name: str) -> str | None:
    """The binary of tool ``name`` on the PATH, if there is one."""
    return next((path for n in TOOLS[name].names if (path := shutil.which(n))), None)


def command(name: str) -> list[str]:
    """The argv prefix that runs tool ``name`` (``promtool``, ``amtool``, ...)."""
    path = on_path(name)
    if path:
        return [path]
    tool = TOOLS[name]
    assert shutil.which("docker"), (
        f"{name} is not on the PATH and there is no docker to run it from "
        f"{tool.image_variable}={image(tool.image_variable)}: install Debian's "
        "prometheus and prometheus-alertmanager packages (.ci/install-monitoring.sh) or Docker"
    )
    temp = os.path.realpath(tempfile.gettempdir())
    return [
        "docker",
        "run",
        "--rm",
        "--interactive",
        # A name of its own, so that a leftover container says which test run left it.
        f"--name=sundial-test-{name}-{uuid.uuid4().hex[:8]}",
        "--network=host",
        f"--user={os.getuid()}:{os.getgid()}",
        f"--volume={ROOT}:{ROOT}:ro",
        f"--volume={temp}:{temp}",
        f"--workdir={ROOT}",
        f"--entrypoint={tool.path_in_image}",
        image(tool.image_variable),
    ]
