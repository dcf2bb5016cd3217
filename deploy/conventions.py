"""What Sundial's generated monitoring artefacts agree on, each fact once with its reason.

The alert rules (``prometheus/generate_rules.py``), the dashboard (``grafana/generate.py``)
and the PromQL lint (``prometheus/promql.py``) read these and repeat none of them. Change a
value here, run both generators and commit what they write; ``docs/metrics.md`` explains
the values to operators.
"""

from __future__ import annotations

from dataclasses import dataclass

from sundial import constants as library

MIB = 1024**2


@dataclass(frozen=True)
class ScrapeJob:
    """One of Sundial's Prometheus scrape jobs, and the limits of each process it scrapes.

    The limits are the compose services' ``deploy.resources.limits``; they are recorded
    as series so that an alert and the dashboard compare usage with the same numbers.
    """

    name: str
    memory_limit_bytes: int
    cpu_limit_cores: float

    @property
    def selector(self) -> str:
        """The label matcher that picks this job's series out of a shared Prometheus."""
        return f'job="{self.name}"'


# The names of deploy/prometheus/prometheus.yml's scrape jobs. Another Prometheus that
# names its scrape jobs otherwise needs only these names changed; the limits are joined
# to usage on the `job` label, so the label itself stays `job`.
SCHEDULER = ScrapeJob("sundial-scheduler", memory_limit_bytes=512 * MIB, cpu_limit_cores=1.0)
API = ScrapeJob("sundial-api", memory_limit_bytes=512 * MIB, cpu_limit_cores=1.0)
#: The processes whose memory and CPU are watched against their limits.
LIMITED = (SCHEDULER, API)
LIMITED_SELECTOR = 'job=~"{}"'.format("|".join(job.name for job in LIMITED))

# The provisioned datasource (deploy/grafana/provisioning/datasources/prometheus.yml) and
# the dashboard keep fixed uids, so panels and alert links never need an import step.
DATASOURCE_UID = "sundial-prometheus"
DASHBOARD_UID = "sundial-overview"
# Where the compose stack publishes Grafana; every alert links to the dashboard there.
GRAFANA_URL = "http://localhost:3000"
DASHBOARD_URL = f"{GRAFANA_URL}/d/{DASHBOARD_UID}"
RUNBOOK_URL = "https://github.com/sundial/sundial/blob/main/deploy/prometheus/RUNBOOK.md"

# No heartbeat from any scheduler for this long means none is working (the lease is 10 s).
# The dashboard's heartbeat age turns red at the same age.
HEARTBEAT_STALE_SECONDS = 60
# A job is "overdue" once its next run time is this far in the past with nothing run.
OVERDUE_MARGIN_SECONDS = 300
# "Much longer than usual": this many times the job's p95 duration, and at least the floor.
TOO_LONG_FACTOR = 3
TOO_LONG_FLOOR_SECONDS = 300
# Used when a job has neither a timeout nor any run in the last week to learn from.
TOO_LONG_DEFAULT_SECONDS = 3600
# One failure may be bad luck; this many in a row is a job that does not recover alone.
FAILING_REPEATEDLY_RUNS = 3
# Below the lag histogram's last finite bucket (sundial.metrics.LAG_BUCKETS): a quantile
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
