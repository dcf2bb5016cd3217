"""What Sundial's generated monitoring artefacts agree on, each fact once with its reason.

The alert rules (``prometheus/generate_rules.py``), the dashboard (``grafana/generate.py``)
and the PromQL lint (``prometheus/promql.py``) read these and repeat none of them. Change a
value here, run both generators and commit what they write; ``docs/metrics.md`` explains
the values to operators.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sundial import constants as library

MIB = 1024**2


@dataclass(frozen=True)
class ScrapeJob:
    """One of Sundial's Prometheus scrape jobs, and the limits of each process it scrapes.

    The limits are the compose services' ``deploy.resources.limits``; they are recorded
    as series labelled with ``component`` so that an alert and the dashboard compare
    usage with the same numbers.
    """

    name: str
    component: str
    memory_limit_bytes: int
    cpu_limit_cores: float

    @property
    def selector(self) -> str:
        """The label matcher that picks this job's series out of a shared Prometheus."""
        return f'job="{self.name}"'


# The names of deploy/prometheus/prometheus.yml's scrape jobs, the default selectors.
SCHEDULER = ScrapeJob(
    "sundial-scheduler", component="scheduler", memory_limit_bytes=512 * MIB, cpu_limit_cores=1.0
)
API = ScrapeJob("sundial-api", component="api", memory_limit_bytes=512 * MIB, cpu_limit_cores=1.0)
# Workers (SUNDIAL_EXECUTOR=queue) export the run metrics of the runs they execute.
WORKER = ScrapeJob(
    "sundial-worker", component="worker", memory_limit_bytes=512 * MIB, cpu_limit_cores=1.0
)
#: The processes whose memory and CPU are watched against their limits.
LIMITED = (SCHEDULER, API, WORKER)

# The provisioned datasource (deploy/grafana/provisioning/datasources/prometheus.yml) and
# the dashboard keep fixed uids, so alert links never need an import step. The dashboard's
# datasource variable starts on DATASOURCE_UID and falls back to Grafana's default
# Prometheus where that uid does not exist (an import into a Grafana of one's own).
DATASOURCE_UID = "sundial-prometheus"
DASHBOARD_UID = "sundial-overview"
# The compose stack's API serves the runbook (services/api, route /runbook) and its
# Grafana the dashboard: the links' defaults, which work out of the box there.
RUNBOOK_URL = "http://localhost:8000/runbook"
GRAFANA_URL = "http://localhost:3000"

# A label matcher list as Prometheus writes one inside braces: name, operator, quoted value.
_MATCHER = r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_SELECTOR = re.compile(rf"{_MATCHER}(,{_MATCHER})*,?")


def check_selector(text: str) -> str:
    """``text`` if it is a list of label matchers (``job="a",namespace=~"b.*"``)."""
    if not _SELECTOR.fullmatch(text):
        raise ValueError(
            f"not a label matcher list: {text!r}; write it as inside PromQL braces, "
            'e.g. \'namespace="sundial",service="sundial-scheduler"\''
        )
    return text.strip().rstrip(",")


@dataclass(frozen=True)
class Target:
    """The Prometheus and Grafana that generated rules and dashboards are written for.

    Selectors pick each Sundial process's series out of that Prometheus; the URLs are the
    bases of the links in every alert. The defaults are the compose stack's.
    """

    scheduler: str = SCHEDULER.selector
    api: str = API.selector
    worker: str = WORKER.selector
    runbook_url: str = RUNBOOK_URL
    grafana_url: str = GRAFANA_URL

    def __post_init__(self) -> None:
        for name in ("scheduler", "api", "worker"):
            object.__setattr__(self, name, check_selector(getattr(self, name)))
        for name in ("runbook_url", "grafana_url"):
            url = getattr(self, name)
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"{name} must be an http(s) URL, not {url!r}")
            object.__setattr__(self, name, url.rstrip("/"))

    @property
    def dashboard_url(self) -> str:
        return f"{self.grafana_url}/d/{DASHBOARD_UID}"

    def ran(self, selection: Callable[[str], str]) -> str:
        """``selection`` of the scheduler's series or the workers': whoever ran the runs
        (the leader with the local executor, a worker with the queue executor).

        The two differ in their ``job`` (or service) label, so ``or`` keeps both; wrap
        the result in an aggregation ``by (job_id)``.
        """
        return " or ".join(selection(selector) for selector in (self.scheduler, self.worker))

    def limited(self) -> list[tuple[ScrapeJob, str]]:
        """Each process watched against its limits, with the selector of its series."""
        by_component = {
            SCHEDULER.component: self.scheduler,
            API.component: self.api,
            WORKER.component: self.worker,
        }
        return [(job, by_component[job.component]) for job in LIMITED]


DEFAULT_TARGET = Target()
# The Prometheus Operator labels each target with the namespace and the Service it was
# found through; deploy/kubernetes/ names its Services after the scrape jobs above. The
# namespace keeps two installations in one cluster apart: every aggregation would mix
# them otherwise.
KUBERNETES_NAMESPACE = "sundial"


def kubernetes_target(
    namespace: str = KUBERNETES_NAMESPACE,
    *,
    runbook_url: str = RUNBOOK_URL,
    grafana_url: str = GRAFANA_URL,
) -> Target:
    """The selectors of deploy/kubernetes/'s ServiceMonitors, in ``namespace``."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
        raise ValueError(f"not a Kubernetes namespace name: {namespace!r}")
    return Target(
        scheduler=f'namespace="{namespace}",service="{SCHEDULER.name}"',
        api=f'namespace="{namespace}",service="{API.name}"',
        worker=f'namespace="{namespace}",service="{WORKER.name}"',
        runbook_url=runbook_url,
        grafana_url=grafana_url,
    )


def add_selector_options(parser: argparse.ArgumentParser) -> None:
    """The generators' options for a Prometheus that labels Sundial's series otherwise."""
    group = parser.add_argument_group(
        "selectors", "label matchers of each process's series (defaults: the compose stack's)"
    )
    for name in ("scheduler", "api", "worker"):
        group.add_argument(
            f"--{name}-selector",
            default=getattr(DEFAULT_TARGET, name),
            metavar="MATCHERS",
            help=f"the {name} series (default: %(default)s)",
        )


def add_link_options(parser: argparse.ArgumentParser) -> None:
    """The rule generator's options for where alert links point."""
    group = parser.add_argument_group("links", "bases of the links in every alert")
    group.add_argument(
        "--runbook-url",
        default=RUNBOOK_URL,
        help="the runbook, each alert's section an anchor (default: %(default)s)",
    )
    group.add_argument("--grafana-url", default=GRAFANA_URL, help="Grafana (default: %(default)s)")


def parse_target(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    build: Callable[[argparse.Namespace], Target] | None = None,
) -> tuple[argparse.Namespace, Target]:
    """The options and the target they name (``build``, default target_from_options()); a
    selector or URL that Prometheus could not use is a usage error."""
    options = parser.parse_args(argv)
    try:
        return options, (build or target_from_options)(options)
    except ValueError as error:
        parser.error(str(error))


def target_from_options(options: argparse.Namespace) -> Target:
    """The target the options of add_selector_options() (and add_link_options()) name."""
    return Target(
        scheduler=options.scheduler_selector,
        api=options.api_selector,
        worker=options.worker_selector,
        runbook_url=getattr(options, "runbook_url", RUNBOOK_URL),
        grafana_url=getattr(options, "grafana_url", GRAFANA_URL),
    )


# No heartbeat from any scheduler for this long means none is working (the lease is 10 s).
# The dashboard's heartbeat age turns red at the same age.
HEARTBEAT_STALE_SECONDS = 60
# "Much longer than usual": this many times the job's p95 duration, and at least the floor.
TOO_LONG_FACTOR = 3
TOO_LONG_FLOOR_SECONDS = 300
# Used when a job has neither a timeout nor any run in the last week to learn from.
TOO_LONG_DEFAULT_SECONDS = 3600
# One failure may be bad luck; this many in a row is a job that does not recover alone.
FAILING_REPEATEDLY_RUNS = 3
# Below the lag histogram's last finite bucket (sundial.job_series.LAG_BUCKETS): a quantile
# never reads above that bucket, so a threshold at or past it could never fire.
LAG_P95_SECONDS = 30
# Headroom before the kernel kills the process at its memory limit.
MEMORY_HIGH_RATIO = 0.9
# A 5xx is the API's own fault, never the client's: past this share of requests, users notice.
API_ERROR_RATIO = 0.05
# Long-lived by design, so left out of the latency alert: the SSE stream and `?wait=` on
# commands. The other routes read or write a few rows: a second at p95 means a
# struggling backend.
SLOW_BY_DESIGN_ROUTES = "/api/v1/events|/api/v1/commands/.*"
API_LATENCY_P95_SECONDS = 1
# The library schedules the maintenance job, so the alert that watches it takes the job's
# id and interval from there. Two missed runs mean run history is no longer pruned.
MAINTENANCE_JOB_ID = library.MAINTENANCE_JOB_ID
MAINTENANCE_INTERVAL_HOURS = library.MAINTENANCE_INTERVAL_HOURS
MAINTENANCE_STALE_SECONDS = 2 * MAINTENANCE_INTERVAL_HOURS * 3600
# The leader records a queued run `missed` once it has waited past its misfire grace
# (60 s unless the job says otherwise), so a queue's oldest run rarely waits longer: past
# twice that, either the job allows a long grace and no worker of its queue is taking
# runs, or no leader is sweeping the queue.
QUEUED_TOO_LONG_SECONDS = 120
