"""Instance placement seen from outside: KIND_GPU refused without a GPU (with the reason),
KIND_AUTO falling back to CPU, and each instance's device in metadata and /metrics."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import onnxruntime
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

import generate_models
from tests.integration.http_helpers import get_json, post_json
from tests.integration.server import RunningServer, running_server

AUTO_CONFIG = """
instance_group [ { name: "auto", kind: KIND_AUTO, count: 2, gpus: [ 0 ] } ]
"""
GPU_CONFIG = """
instance_group [ { kind: KIND_GPU, count: 1 } ]
"""
HAS_CUDA_PROVIDER = "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.fixture(scope="module")
def placement_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("placement")
    for name, config in (("auto", AUTO_CONFIG), ("gpu_only", GPU_CONFIG)):
        generate_models.mlp_model(repository / name / "1" / "model.onnx", (4, 8, 2))
        (repository / name / "config.pbtxt").write_text(config)
    with running_server(repository) as server:
        yield server


@pytest.mark.skipif(HAS_CUDA_PROVIDER, reason="this machine can place instances on a GPU")
def test_kind_gpu_without_gpu_is_unavailable_with_reason(placement_server: RunningServer) -> None:
    status, rows = post_json(placement_server.http_port, "/v2/repository/index", {})
    assert status == 200
    row = next(r for r in rows if r["name"] == "gpu_only")
    assert row["state"] == "UNAVAILABLE"
    assert "KIND_GPU" in row["reason"] and "no usable GPU" in row["reason"]
    status, body = get_json(placement_server.http_port, "/v2/models/gpu_only")
    assert status != 200 and "KIND_GPU" in body["error"]  # the reason reaches the client
    assert "model 'gpu_only'" in placement_server.log_text()


@pytest.mark.skipif(HAS_CUDA_PROVIDER, reason="KIND_AUTO picks the GPU on this machine")
def test_kind_auto_falls_back_to_cpu_and_metadata_lists_instances(
    placement_server: RunningServer,
) -> None:
    client = httpclient.InferenceServerClient(placement_server.http_url)
    metadata = client.get_model_metadata("auto")
    client.close()
    assert metadata["instances"] == [
        {"name": "auto_0", "kind": "KIND_CPU", "device": "cpu"},
        {"name": "auto_1", "kind": "KIND_CPU", "device": "cpu"},
    ]
    _, config = get_json(placement_server.http_port, "/v2/models/auto/config")
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert not config["instance_group"][0].get("gpus")


def test_grpc_metadata_still_parses(placement_server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(placement_server.grpc_url)
    metadata = client.get_model_metadata("auto")
    client.close()
    assert metadata.name == "auto"
    assert [t.name for t in metadata.inputs] == ["input"]


def test_metrics_label_each_instance_with_its_device(placement_server: RunningServer) -> None:
    with urllib.request.urlopen(placement_server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        if family.name == "inferd_model_instance"
        for sample in family.samples
    ]
    labels = sorted((s.labels["model"], s.labels["instance"], s.labels["device"]) for s in samples)
    if HAS_CUDA_PROVIDER:
        expected = [("auto", "auto_0", "gpu:0"), ("auto", "auto_1", "gpu:0")]
        expected.append(("gpu_only", "gpu_only_0_0", "gpu:0"))
    else:  # gpu_only has no instance
        expected = [("auto", "auto_0", "cpu"), ("auto", "auto_1", "cpu")]
    assert labels == expected
    assert {s.value for s in samples} == {1.0}
