"""Repository control and statistics over gRPC: RepositoryModelLoad/Unload, ModelStatistics."""

from __future__ import annotations

import json
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.integration.grpc_helpers import A, B, assert_serving, output, simple_request, stub
from tests.integration.server import RunningServer


def _status(call: Any) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    status: str = caught.value.status()
    return status


def test_load_and_unload_in_explicit_mode(explicit_server: RunningServer) -> None:
    with grpcclient.InferenceServerClient(explicit_server.grpc_url) as client:
        assert not client.is_model_ready("mlp")
        client.load_model("mlp")
        assert client.is_model_ready("mlp")
        client.unload_model("mlp")
        assert not client.is_model_ready("mlp")
        not_found = str(grpc.StatusCode.NOT_FOUND)
        assert _status(lambda: client.get_model_metadata("mlp")) == not_found
    assert_serving(explicit_server.grpc_url)


def test_load_with_config_override(explicit_server: RunningServer) -> None:
    config = {"name": "mlp", "backend": "onnxruntime", "max_batch_size": 2}
    with grpcclient.InferenceServerClient(explicit_server.grpc_url) as client:
        client.load_model("mlp", config=json.dumps(config))
        try:
            assert client.get_model_config("mlp").config.max_batch_size == 2
        finally:
            client.unload_model("mlp")


@pytest.mark.parametrize(
    ("name", "config", "code"),
    [
        ("no_such_model", None, grpc.StatusCode.NOT_FOUND),
        ("../simple", None, grpc.StatusCode.INVALID_ARGUMENT),
        ("mlp", "{not json", grpc.StatusCode.INVALID_ARGUMENT),
        ("mlp", json.dumps({"max_batch_size": "many"}), grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["missing", "path-like", "config-not-json", "config-invalid"],
)
def test_bad_load_requests(
    explicit_server: RunningServer, name: str, config: str | None, code: grpc.StatusCode
) -> None:
    with grpcclient.InferenceServerClient(explicit_server.grpc_url) as client:
        assert _status(lambda: client.load_model(name, config=config)) == str(code)
    assert_serving(explicit_server.grpc_url)


def test_load_refused_outside_explicit_mode(server: RunningServer) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert _status(lambda: client.load_model("mlp")) == str(grpc.StatusCode.UNIMPLEMENTED)
        assert _status(lambda: client.unload_model("mlp")) == str(grpc.StatusCode.UNIMPLEMENTED)
        assert client.is_model_ready("mlp")


def test_statistics_count_requests(server: RunningServer) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:

        def simple_stats() -> dict[str, Any]:
            stats = client.get_inference_statistics("simple", "1", as_json=True)["model_stats"]
            assert [(s["name"], s["version"]) for s in stats] == [("simple", "1")]
            return stats[0]  # type: ignore[no-any-return]

        before = simple_stats()
        with stub(server.grpc_url) as service:
            for _ in range(3):
                np.testing.assert_array_equal(
                    output(service.ModelInfer(simple_request()), "OUTPUT0"), A + B
                )
        after = simple_stats()
        success = int(after["inference_stats"]["success"]["count"])
        assert success == int(before["inference_stats"].get("success", {}).get("count", 0)) + 3
        assert int(after["inference_stats"]["success"]["ns"]) > 0
        assert int(after["execution_count"]) >= 3
        assert int(after["last_inference"]) > 0
        every = client.get_inference_statistics(as_json=True)["model_stats"]
        assert {"mlp", "simple"} <= {s["name"] for s in every}
        not_found = str(grpc.StatusCode.NOT_FOUND)
        assert _status(lambda: client.get_inference_statistics("no_such_model")) == not_found
