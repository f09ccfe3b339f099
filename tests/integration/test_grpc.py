"""The gRPC frontend through tritonclient.grpc (sync, aio and streaming) on a real server."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from tests.integration.grpc_helpers import A, B, assert_serving, reference
from tests.integration.server import RunningServer, running_server, stop_server


@pytest.fixture
def client(server: RunningServer) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_url) as connected:
        yield connected


def _simple_inputs(a: np.ndarray, b: np.ndarray) -> list[grpcclient.InferInput]:
    inputs = [
        grpcclient.InferInput("INPUT0", list(a.shape), "INT32"),
        grpcclient.InferInput("INPUT1", list(b.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


def _mlp_input(x: np.ndarray) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return [tensor]


def _mlp_batch(seed: int, rows: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 8)).astype(np.float32)


def test_simple_sync_matches_onnxruntime(
    client: grpcclient.InferenceServerClient, model_repository: Path
) -> None:
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.arange(32, 0, -1, dtype=np.int32).reshape(2, 16)
    result = client.infer("simple", _simple_inputs(a, b), request_id="req-7")
    expected = reference(model_repository, "simple", {"INPUT0": a, "INPUT1": b})
    assert result.get_response().id == "req-7"
    assert result.get_response().model_version == "1"
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), expected["OUTPUT0"])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), expected["OUTPUT1"])


def test_mlp_sync_matches_onnxruntime(
    client: grpcclient.InferenceServerClient, model_repository: Path
) -> None:
    x = _mlp_batch(0)
    result = client.infer("mlp", _mlp_input(x), model_version="1")
    expected = reference(model_repository, "mlp", {"input": x})["output"]
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)


def test_requested_outputs_only(client: grpcclient.InferenceServerClient) -> None:
    outputs = [grpcclient.InferRequestedOutput("OUTPUT1")]
    result = client.infer("simple", _simple_inputs(A, B), outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == ["OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), A - B)


def test_request_parameters_of_every_kind_are_accepted(
    client: grpcclient.InferenceServerClient,
) -> None:
    parameters = {"flag": True, "count": -3, "ratio": 0.5, "label": "x"}
    result = client.infer("simple", _simple_inputs(A, B), parameters=parameters)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), A + B)


def test_health_and_readiness(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    assert client.is_model_ready("mlp", "1")
    assert not client.is_model_ready("mlp", "2")
    assert not client.is_model_ready("no_such_model")


def test_server_and_model_metadata(client: grpcclient.InferenceServerClient) -> None:
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "inferd"
    assert "model_repository" in server["extensions"]
    metadata = client.get_model_metadata("mlp", as_json=True)
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "8"]}]
    assert metadata["outputs"] == [{"name": "output", "datatype": "FP32", "shape": ["-1", "4"]}]


def test_model_config_is_the_completed_config(client: grpcclient.InferenceServerClient) -> None:
    config = client.get_model_config("mlp").config  # auto-completed: no config file on disk
    assert config.name == "mlp"
    assert config.max_batch_size > 0
    assert [i.name for i in config.input] == ["input"]
    assert list(config.output[0].dims) == [4]
    assert client.get_model_config("simple").config.max_batch_size == 8


def test_repository_index(client: grpcclient.InferenceServerClient) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    rows = {(m["name"], m.get("version"), m["state"]) for m in index}
    assert {("mlp", "1", "READY"), ("simple", "1", "READY")} <= rows


def _fails_then_serves(
    client: grpcclient.InferenceServerClient,
    server: RunningServer,
    call: Any,
    status: grpc.StatusCode,
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        call(client)
    assert caught.value.status() == str(status)
    assert_serving(server.grpc_url)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_model_metadata("no_such_model"),
        lambda c: c.get_model_config("no_such_model"),
        lambda c: c.get_model_metadata("simple", "9"),
        lambda c: c.infer("no_such_model", _simple_inputs(A, B)),
        lambda c: c.infer("simple", _simple_inputs(A, B), model_version="9"),
    ],
    ids=["metadata", "config", "metadata-version", "infer", "infer-version"],
)
def test_unknown_model_or_version_is_not_found(
    client: grpcclient.InferenceServerClient, server: RunningServer, call: Any
) -> None:
    _fails_then_serves(client, server, call, grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_system_shared_memory_status(),
        lambda c: c.register_cuda_shared_memory("gpu", b"", 0, 64),
        # Trace and log settings are offered since issue #19 (test_trace_logging.py).
    ],
    ids=["system-shm", "cuda-shm"],
)
def test_unoffered_extensions_answer_unimplemented(
    client: grpcclient.InferenceServerClient, server: RunningServer, call: Any
) -> None:
    _fails_then_serves(client, server, call, grpc.StatusCode.UNIMPLEMENTED)


def test_stream_answers_in_order_and_reports_errors_in_stream(
    client: grpcclient.InferenceServerClient, model_repository: Path
) -> None:
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    batches = [_mlp_batch(seed, rows=1 + seed % 4) for seed in range(12)]
    try:
        for seed, x in enumerate(batches):
            if seed == 5:  # a bad request in the middle; the stream must carry on
                client.async_stream_infer("no_such_model", _mlp_input(x), request_id="bad")
            client.async_stream_infer("mlp", _mlp_input(x), request_id=str(seed))
        received = [results.get(timeout=30) for _ in range(len(batches) + 1)]
    finally:
        client.stop_stream()
    errors = [error for _, error in received if error is not None]
    assert len(errors) == 1
    assert "no_such_model" in errors[0].message()
    answers = [result for result, error in received if error is None]
    assert [r.get_response().id for r in answers] == [str(s) for s in range(len(batches))]
    for result, x in zip(answers, batches, strict=True):
        expected = reference(model_repository, "mlp", {"input": x})["output"]
        np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)


def test_aio_client_infer_and_stream(server: RunningServer, model_repository: Path) -> None:
    batches = [_mlp_batch(seed) for seed in range(6)]

    async def requests() -> AsyncIterator[dict[str, Any]]:
        for seed, x in enumerate(batches):
            yield {"model_name": "mlp", "inputs": _mlp_input(x), "request_id": str(seed)}

    async def run() -> tuple[Any, list[tuple[Any, Any]]]:
        async with aioclient.InferenceServerClient(server.grpc_url) as client:
            assert await client.is_server_ready()
            single = await client.infer("simple", _simple_inputs(A, B))
            streamed = [item async for item in client.stream_infer(requests())]
            return single, streamed

    single, streamed = asyncio.run(run())
    np.testing.assert_array_equal(single.as_numpy("OUTPUT1"), A - B)
    assert [error for _, error in streamed] == [None] * len(batches)
    assert [r.get_response().id for r, _ in streamed] == [str(s) for s in range(len(batches))]
    for (result, _), x in zip(streamed, batches, strict=True):
        expected = reference(model_repository, "mlp", {"input": x})["output"]
        np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)


def test_grpc_port_zero_disables_grpc(model_repository: Path) -> None:
    with running_server(model_repository, "--grpc-port", "0") as server:
        assert "gRPC" not in server.ports
        assert "HTTP" in server.ports


def test_sigterm_ends_open_streams_within_the_grace_period(model_repository: Path) -> None:
    with running_server(model_repository, "--shutdown-grace-seconds", "1") as server:
        results: queue.Queue[tuple[Any, Any]] = queue.Queue()
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            client.start_stream(callback=lambda result, error: results.put((result, error)))
            client.async_stream_infer("simple", _simple_inputs(A, B), request_id="before")
            result, error = results.get(timeout=30)
            assert error is None
            assert result.get_response().id == "before"
            # The stream stays open and idle: shutdown must not wait on it past the grace.
            started = time.monotonic()
            assert stop_server(server) == 0
            assert time.monotonic() - started < 10
            client.stop_stream()
        assert "stopped" in server.log_text()
