"""`grpc.health.v1.Health` through its own generated stub: the server and each model, Check and
Watch, as Kubernetes `grpc` probes and load balancers call them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc

import generate_models
from tests.integration.server import RunningServer, running_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


@contextmanager
def health_stub(url: str) -> Iterator[Any]:
    with grpc.insecure_channel(url) as channel:
        yield health_pb2_grpc.HealthStub(channel)


def _check(url: str, service: str) -> Any:
    with health_stub(url) as stub:
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_the_server_and_a_ready_model_are_serving(server: RunningServer) -> None:
    assert _check(server.grpc_url, "") == SERVING
    assert _check(server.grpc_url, "inference.GRPCInferenceService") == SERVING
    assert _check(server.grpc_url, "simple") == SERVING


def test_an_unknown_service_is_not_found(server: RunningServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _check(server.grpc_url, "no-such-model")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in (caught.value.details() or "")


def test_a_malformed_request_is_an_invalid_argument(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        with pytest.raises(grpc.RpcError) as caught:
            check(b"\xff\xff\xff", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def broken_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`simple` loads, `broken` (not an ONNX file) does not: the server is not ready."""
    repository = tmp_path_factory.mktemp("health")
    generate_models.simple_model(repository / "simple" / "1" / "model.onnx")
    (repository / "simple" / "config.pbtxt").write_text(generate_models.SIMPLE_CONFIG)
    (repository / "broken" / "1").mkdir(parents=True)
    (repository / "broken" / "1" / "model.onnx").write_bytes(b"not a model")
    with running_server(repository) as running:
        yield running


def test_a_model_that_failed_to_load_is_not_serving(broken_server: RunningServer) -> None:
    assert _check(broken_server.grpc_url, "broken") == NOT_SERVING
    assert _check(broken_server.grpc_url, "simple") == SERVING
    # Strict readiness: a model that failed makes the server not ready, as ServerReady says.
    assert _check(broken_server.grpc_url, "") == NOT_SERVING
    assert not grpcclient.InferenceServerClient(broken_server.grpc_url).is_server_ready()


def test_watch_follows_a_model_loaded_and_unloaded(explicit_server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(explicit_server.grpc_url)
    with health_stub(explicit_server.grpc_url) as stub:
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="mlp"), timeout=60)
        try:
            assert next(watch).status == SERVICE_UNKNOWN
            client.load_model("mlp")
            assert next(watch).status == SERVING
            client.unload_model("mlp")
            assert next(watch).status in (NOT_SERVING, SERVICE_UNKNOWN)
        finally:
            watch.cancel()


def test_the_standard_probe_matches_server_ready(tmp_path: Path) -> None:
    # Nothing to load: ready at once, and the overall service says so on its first Watch answer.
    with running_server(tmp_path) as server, health_stub(server.grpc_url) as stub:
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        try:
            assert next(watch).status == SERVING
        finally:
            watch.cancel()


def test_list_names_the_server_and_every_model(broken_server: RunningServer) -> None:
    if "List" not in health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name:
        pytest.skip("the installed grpcio-health-checking predates Health.List")
    with health_stub(broken_server.grpc_url) as stub:
        answer = stub.List(health_pb2.HealthListRequest(), timeout=10)
    statuses = {name: response.status for name, response in answer.statuses.items()}
    assert statuses == {"": NOT_SERVING, "simple": SERVING, "broken": NOT_SERVING}
