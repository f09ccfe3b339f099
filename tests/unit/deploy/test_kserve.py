"""deploy/kserve: the ServingRuntimes run an `inferd serve` that inferd's parser accepts, on the
ports KServe and the runtime's own fields expect, and the InferenceServices fit their runtime."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.deploy.manifests import KSERVE, container_serve, kserve_documents

# KServe's ports for a V2 runtime (those of its Triton runtime): HTTP 8080, gRPC 9000.
HTTP_PORT, GRPC_PORT = 8080, 9000

RUNTIMES = {
    document["metadata"]["name"]: document for _, document in kserve_documents("ServingRuntime")
}
SERVICES = [document for _, document in kserve_documents("InferenceService")]


def _main_container(runtime: dict[str, Any]) -> dict[str, Any]:
    containers = {container["name"]: container for container in runtime["spec"]["containers"]}
    assert "kserve-container" in containers, "KServe runs the container named kserve-container"
    return containers["kserve-container"]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {variable["name"]: variable for variable in container.get("env", [])}


def test_there_is_a_single_node_and_a_multi_node_runtime() -> None:
    assert set(RUNTIMES) == {"inferd", "inferd-multinode"}
    assert "workerSpec" in RUNTIMES["inferd-multinode"]["spec"]
    assert "workerSpec" not in RUNTIMES["inferd"]["spec"]


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_runtime_serves_v2_over_http_and_grpc_on_kserve_ports(name: str) -> None:
    spec = RUNTIMES[name]["spec"]
    assert {"v2", "grpc-v2"} <= set(spec["protocolVersions"])
    formats = {model_format["name"] for model_format in spec["supportedModelFormats"]}
    assert {"triton", "onnx", "pytorch", "tensorflow", "python"} <= formats
    container = _main_container(RUNTIMES[name])
    settings = container_serve(container, f"ServingRuntime {name}")
    assert (settings.host, settings.http_port, settings.grpc_port) == (
        "0.0.0.0",
        HTTP_PORT,
        GRPC_PORT,
    )
    # KServe's storage initializer puts the storageUri there.
    assert settings.model_repository == ("/mnt/models",)
    assert int(spec["annotations"]["prometheus.kserve.io/port"]) == settings.metrics_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in container:
            assert container[probe]["httpGet"]["port"] == settings.http_port, probe


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_runtime_answers_the_host_names_kserve_routes_by(name: str) -> None:
    container = _main_container(RUNTIMES[name])
    assert container_serve(container, f"ServingRuntime {name}").allowed_hosts == ("*",)


def test_multi_node_runtime_starts_a_ray_head_and_workers_that_join_it() -> None:
    spec = RUNTIMES["inferd-multinode"]["spec"]
    head = _main_container(RUNTIMES["inferd-multinode"])
    assert head["command"] == ["inferd-ray-head"]
    assert _env(head)["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    (worker,) = spec["workerSpec"]["containers"]
    # KServe finds the worker's container by this name.
    assert worker["name"] == "worker-container"
    assert "exec inferd-ray-worker " in worker["args"][0]
    assert "${HEAD_SVC" in worker["args"][0] and "${POD_NAMESPACE}" in worker["args"][0]
    assert "POD_NAMESPACE" in _env(worker)
    for container in (head, worker):
        env = _env(container)
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "inferd-ray-token"
        assert not container.get("ports"), "Ray's ports are never published"
        # KServe sizes the Ray cluster from the GPUs the pods request.
        assert int(container["resources"]["requests"]["nvidia.com/gpu"]) >= 1


@pytest.mark.parametrize(
    "service", SERVICES, ids=[service["metadata"]["name"] for service in SERVICES]
)
def test_inference_service_fits_its_runtime(service: dict[str, Any]) -> None:
    predictor = service["spec"]["predictor"]
    model = predictor["model"]
    runtime = RUNTIMES[model["runtime"]]["spec"]
    formats = {model_format["name"] for model_format in runtime["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert model["protocolVersion"] in runtime["protocolVersions"]
    settings = container_serve(_main_container(RUNTIMES[model["runtime"]]), model["runtime"])
    if model["protocolVersion"] == "grpc-v2":
        (port,) = model["ports"]
        assert (port["name"], port["containerPort"]) == ("h2c", settings.grpc_port)
    # KServe runs a workerSpec only for a runtime that has one, as raw Deployments.
    assert ("workerSpec" in predictor) == ("workerSpec" in runtime)
    if "workerSpec" in predictor:
        annotations = service["metadata"]["annotations"]
        assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"
        assert annotations["serving.kserve.io/autoscalerClass"] == "none"


def test_every_kserve_file_is_checked() -> None:
    kinds = {path.name for path, _ in kserve_documents("ServingRuntime")}
    kinds |= {path.name for path, _ in kserve_documents("InferenceService")}
    assert kinds == {path.name for path in KSERVE.glob("*.yaml")}
