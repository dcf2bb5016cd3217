"""On a machine with only Docker and Python: the rule, routing and alerting tests run with
promtool, amtool, prometheus and alertmanager hidden from the PATH, through the images
(``monitoring_tools``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import monitoring_tools
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
# The rule and routing tests whole; of the alerting tests the first, which starts the
# whole stack (Prometheus and Alertmanager included) and sees a page delivered.
TESTS = [
    "tests/unit/test_prometheus_rules.py",
    "tests/unit/test_alertmanager.py",
    "tests/e2e/test_alerting.py::test_a_failing_critical_job_pages_by_webhook_and_email",
]


def path_without_monitoring_tools(farm: Path) -> str:
    """A PATH of one directory linking every program of this PATH but those tools."""
    farm.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = farm / entry.name
            if entry.name in monitoring_tools.ALL_NAMES or link.exists():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(farm)


def test_rule_routing_and_alerting_tests_pass_through_the_images(tmp_path: Path) -> None:
    path = path_without_monitoring_tools(tmp_path / "bin")
    assert {name for name in monitoring_tools.ALL_NAMES if shutil.which(name, path=path)} == set()
    assert shutil.which("docker", path=path), "no docker to run the images with"

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
        cwd=ROOT,
        env=os.environ | {"PATH": path},
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 30, summary
    assert "skipped" not in summary, summary
