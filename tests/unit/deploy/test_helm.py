"""deploy/helm/inferd: every value a template reads is in values.yaml; rendered by `helm` where
it is installed (skipped otherwise), the chart runs an `inferd serve` that inferd's parser
accepts, behind a Service on its ports, with an optional ServiceMonitor and Ray workers."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.unit.deploy.manifests import CHART, container_serve, documents

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
TEMPLATES = sorted((CHART / "templates").iterdir())


def _has(values: Any, path: list[str]) -> bool:
    for key in path:
        if not isinstance(values, dict) or key not in values:
            return False
        values = values[key]
    return True


def test_chart_is_a_v2_application_chart() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["type"]) == ("v2", "inferd", "application")


def test_every_value_the_templates_read_is_in_values_yaml() -> None:
    read = {
        match
        for template in TEMPLATES
        for match in re.findall(r"\.Values((?:\.\w+)+)", template.read_text())
    }
    assert len(read) > 20
    missing = sorted(path for path in read if not _has(VALUES, path.split(".")[1:]))
    assert not missing, f"templates read values that values.yaml lacks: {missing}"


def _render(*settings: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The chart's objects for release `t`, by (kind, name)."""
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not installed")
    options = [word for setting in settings for word in ("--set", setting)]
    rendered = subprocess.run(
        [helm, "template", "t", str(CHART), *options], capture_output=True, text=True, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    return {(item["kind"], item["metadata"]["name"]): item for item in documents(rendered.stdout)}


def _container(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    (container,) = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
    return container


def test_chart_serves_a_volume_on_the_service_ports() -> None:
    objects = _render()
    settings = container_serve(_container(objects, "t-inferd"), "chart, default values")
    assert settings.model_repository == ("/models",) and settings.cluster == ""
    ports = {
        port["name"]: port["port"] for port in objects[("Service", "t-inferd")]["spec"]["ports"]
    }
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert (settings.http_port, settings.grpc_port, settings.metrics_port) == (8000, 8001, 8002)
    assert not any(kind == "ServiceMonitor" for kind, _ in objects)
    assert ("Deployment", "t-inferd-ray-worker") not in objects


def test_chart_in_cluster_mode_starts_ray_workers_that_find_the_head() -> None:
    objects = _render(
        "cluster.enabled=true",
        "cluster.workers.replicas=3",
        "serviceMonitor.enabled=true",
        "modelRepository.url=s3://models/repository",
    )
    assert objects[("Deployment", "t-inferd")]["spec"]["strategy"]["type"] == "Recreate"
    head = _container(objects, "t-inferd")
    settings = container_serve(head, "chart, cluster mode")
    assert settings.model_repository == ("s3://models/repository",)
    env = {variable["name"]: variable for variable in head["env"]}
    assert env["RAY_NODE_COUNT"]["value"] == "4"
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    workers = objects[("Deployment", "t-inferd-ray-worker")]
    assert workers["spec"]["replicas"] == 3
    worker = _container(objects, "t-inferd-ray-worker")
    assert worker["command"] == ["inferd-ray-worker"]
    assert worker["args"][0].startswith("t-inferd-ray-head.")
    head_service = objects[("Service", "t-inferd-ray-head")]["spec"]
    assert head_service["clusterIP"] == "None" and not head_service.get("ports")
    secret = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
    assert ("Secret", secret) in objects
    monitor = objects[("ServiceMonitor", "t-inferd")]["spec"]
    assert monitor["endpoints"][0]["port"] == "metrics"
