"""``deploy/conventions.py`` agrees with the configuration that repeats its facts.

The rules and the dashboard compare usage with the limits written there: if compose gave
the containers other limits, SundialMemoryHigh would fire too late or too early.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from deploy_modules import DEPLOY, load_deploy_module

from sundial.job_series import LAG_BUCKETS

conventions = load_deploy_module("conventions", "conventions.py")

# Compose's byte units are binary: 512M is 512 MiB.
COMPOSE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def read_yaml(relative: str) -> Any:
    return yaml.safe_load((DEPLOY / relative).read_text(encoding="utf-8"))


def compose_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kmg]?)b?", value.lower())
    assert match, f"not a compose byte value: {value!r}"
    return int(match.group(1)) * COMPOSE_UNITS[match.group(2)]


def scraped_services(job_name: str) -> set[str]:
    """The compose services that deploy/prometheus/prometheus.yml's ``job_name`` scrapes."""
    jobs = read_yaml("prometheus/prometheus.yml")["scrape_configs"]
    matching = [job for job in jobs if job["job_name"] == job_name]
    assert len(matching) == 1, f"prometheus.yml has {len(matching)} scrape jobs {job_name}"
    (job,) = matching
    hosts = {t.split(":")[0] for c in job.get("static_configs", []) for t in c["targets"]}
    return hosts | {name for c in job.get("dns_sd_configs", []) for name in c["names"]}


@pytest.mark.parametrize("job", conventions.LIMITED, ids=lambda job: job.name)
def test_limits_are_the_compose_limits_of_the_services_the_job_scrapes(job: Any) -> None:
    services = read_yaml("compose/compose.yaml")["services"]
    scraped = scraped_services(job.name)
    assert scraped, f"prometheus.yml scrapes no compose service as {job.name}"
    for service in scraped:
        limits = services[service]["deploy"]["resources"]["limits"]
        assert compose_bytes(limits["memory"]) == job.memory_limit_bytes, service
        assert float(limits["cpus"]) == job.cpu_limit_cores, service


def test_lag_threshold_is_one_the_lag_histogram_can_reach() -> None:
    assert conventions.LAG_P95_SECONDS < max(LAG_BUCKETS)
