"""deploy/kubernetes: every kustomization renders, the output is valid for Kubernetes
(``kubernetes-validate``'s schemas, offline) and for the Prometheus Operator, and what the
monitoring component selects is what the base deploys.

Needs ``kubectl`` (its built-in kustomize) on the PATH; fails, not skips, without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import monitoring_tools
import pytest
import yaml
from deploy_modules import DEPLOY, load_deploy_module

KUBERNETES = DEPLOY / "kubernetes"
# The Kubernetes release whose schemas the manifests are held to: the oldest still
# supported upstream when this was written.
KUBERNETES_VERSION = "1.32.0"
KUSTOMIZATIONS = [
    KUBERNETES / "base",
    *sorted(path.parent for path in (KUBERNETES / "overlays").glob("*/kustomization.yaml")),
]
OPERATOR_API = "monitoring.coreos.com/v1"
conventions = load_deploy_module("conventions", "conventions.py")
generate = load_deploy_module("kubernetes_generate", "kubernetes/generate.py")
rules = load_deploy_module("generate_rules", "prometheus/generate_rules.py")

Resource = dict[str, Any]


def render(path: Path) -> list[Resource]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl not found: install one (1.21 or later), see tests/preflight.py"
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def example() -> list[Resource]:
    return render(KUBERNETES / "overlays" / "example")


def of_kind(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def test_the_generated_files_are_the_generators_output(tmp_path: Path) -> None:
    assert generate.main(["--out-dir", str(tmp_path)]) == 0
    for name in ("prometheusrule.yaml", "sundial-overview.json"):
        committed = (generate.MONITORING / name).read_text(encoding="utf-8")
        assert committed == (tmp_path / name).read_text(encoding="utf-8"), (
            f"deploy/kubernetes/components/monitoring/{name} is stale: run "
            "python deploy/kubernetes/generate.py"
        )


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(KUBERNETES)))
def test_every_kustomization_renders_valid_kubernetes_objects(path: Path) -> None:
    resources = render(path)
    assert resources
    for resource in resources:
        if resource["apiVersion"] == OPERATOR_API:
            continue  # custom resources: no schema in Kubernetes', checked below
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        assert resource["metadata"].get("namespace", "sundial") == "sundial"


def test_the_base_runs_api_schedulers_and_workers_locked_down(example: list[Resource]) -> None:
    deployments = of_kind(example, "Deployment")
    assert set(deployments) == {"sundial-api", "sundial-scheduler", "sundial-worker"}
    assert deployments["sundial-scheduler"]["spec"]["replicas"] == 2
    limits = {job.component: job for job in conventions.LIMITED}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        (container,) = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert container["livenessProbe"]["httpGet"]["path"] in ("/health", "/healthz"), name
        assert container["readinessProbe"]["httpGet"]["path"] in ("/health/ready", "/readyz")
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        if component in limits:
            # The limits SundialMemoryHigh and the dashboard compare usage with.
            memory = container["resources"]["limits"]["memory"]
            assert memory == f"{limits[component].memory_limit_bytes // conventions.MIB}Mi"
            assert float(container["resources"]["limits"]["cpu"]) == (
                limits[component].cpu_limit_cores
            )
        refs = {next(iter(source.values()))["name"] for source in container["envFrom"]}
        assert refs <= set(of_kind(example, "ConfigMap")) | set(of_kind(example, "Secret"))
    # The workers get runs only from schedulers on the queue executor.
    (settings,) = [m for name, m in of_kind(example, "ConfigMap").items() if "settings" in name]
    assert settings["data"]["SUNDIAL_EXECUTOR"] == "queue"


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_disruption_budget_keeps_a_scheduler(example: list[Resource]) -> None:
    (budget,) = of_kind(example, "PodDisruptionBudget").values()
    assert budget["spec"]["minAvailable"] == 1
    pods = {
        name: d["spec"]["template"]["metadata"]["labels"]
        for name, d in of_kind(example, "Deployment").items()
    }
    selected = [
        n
        for n, labels in pods.items()
        if selects(budget["spec"]["selector"]["matchLabels"], labels)
    ]
    assert selected == ["sundial-scheduler"]


def test_every_service_monitor_scrapes_a_named_port_of_one_service(
    example: list[Resource],
) -> None:
    services = of_kind(example, "Service")
    monitors = of_kind(example, "ServiceMonitor")
    assert set(monitors) == {"sundial-api", "sundial-scheduler", "sundial-worker"}
    for name, monitor in monitors.items():
        assert monitor["apiVersion"] == OPERATOR_API
        assert monitor["metadata"]["namespace"] == "sundial"
        matched = [
            s
            for s in services.values()
            if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        # The Operator labels targets with the Service's name: the rules select on it.
        assert [s["metadata"]["name"] for s in matched] == [name]
        ports = {port["name"] for port in matched[0]["spec"]["ports"]}
        assert monitor["spec"]["endpoints"]
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports, name
            assert endpoint["path"] == "/metrics"
            assert re.fullmatch(r"\d+[smh]", endpoint["interval"])


def test_the_prometheus_rule_holds_every_alert_for_the_deployed_services(
    example: list[Resource], tmp_path: Path
) -> None:
    (rule,) = of_kind(example, "PrometheusRule").values()
    assert rule["apiVersion"] == OPERATOR_API
    groups = rule["spec"]["groups"]
    names = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert names == set(rules.alert_names())
    for group in groups:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item) and item["expr"]
            for key in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in item.get(key, {}).values())
    # Every selection names the namespace it runs in and a Service the base deploys.
    text = json.dumps(groups)
    services = set(of_kind(example, "Service"))
    selected = set(re.findall(r'service=\\"([^"\\]+)\\"', text))
    assert selected and selected <= services | {"sundial-worker"}
    assert set(re.findall(r'namespace=\\"([^"\\]+)\\"', text)) == {rule["metadata"]["namespace"]}
    # And Prometheus takes the groups as a rule file.
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"groups": groups}), encoding="utf-8")
    result = subprocess.run(
        [*monitoring_tools.command("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_config_map_is_one_grafanas_sidecar_loads(example: list[Resource]) -> None:
    board = of_kind(example, "ConfigMap")["sundial-dashboard"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    model = json.loads(board["data"]["sundial-overview.json"])
    assert model["uid"] == conventions.DASHBOARD_UID
    # Its queries select the namespace the objects run in (JSON escapes the quotes).
    assert 'namespace=\\"sundial\\"' in board["data"]["sundial-overview.json"]


def test_another_namespace_is_one_option(tmp_path: Path) -> None:
    assert generate.main(["--namespace", "team-jobs", "--out-dir", str(tmp_path)]) == 0
    text = (tmp_path / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert 'namespace="team-jobs",service="sundial-scheduler"' in text
    assert 'namespace="sundial"' not in text
    with pytest.raises(SystemExit):
        generate.main(["--namespace", "Team_Jobs", "--out-dir", str(tmp_path)])
