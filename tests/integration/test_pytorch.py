"""PyTorch models served by the real server, called with tritonclient over HTTP and gRPC.

Each model is generated here with torch; the served results must equal the module run directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tests.integration.infer_helpers import infer
from tests.integration.server import RunningServer, running_server
from tests.pytorch_models import (
    run,
    write_eager,
    write_exported,
    write_mlp_torchscript,
    write_named_torchscript,
    write_sequence_accumulators,
)

BATCHING = (
    "instance_group [{ count: 2, kind: KIND_CPU }]\n"
    "dynamic_batching { max_queue_delay_microseconds: 20000 }\n"
)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("pytorch")
    modules = {
        "ts_mlp": write_mlp_torchscript(root / "ts_mlp"),
        "ts_named": write_named_torchscript(root / "ts_named"),
        "exported": write_exported(root / "exported"),
        "eager": write_eager(root / "eager"),
    }
    with (root / "ts_mlp" / "config.pbtxt").open("a") as config:
        config.write(BATCHING)
    write_sequence_accumulators(root)
    return root, modules


@pytest.fixture(scope="module")
def server(repository: tuple[Path, dict[str, Any]]) -> Iterator[RunningServer]:
    with running_server(repository[0]) as running:
        yield running


@pytest.fixture(scope="module")
def modules(repository: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    return repository[1]


def _rows(seed: int, rows: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, width)).astype(np.float32)


# model -> (its inputs, the outputs the direct run gives for them)
Case = Callable[[dict[str, Any]], tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]


def _ts_mlp(modules: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    x = _rows(0, 3, 8)
    return {"INPUT__0": x}, {"OUTPUT__0": run(modules["ts_mlp"], x).numpy()}


def _ts_named(modules: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    a, b = _rows(1, 2, 4), _rows(2, 2, 4)
    expected = run(modules["ts_named"], a, b)
    return {"a": a, "b": b}, {name: tensor.numpy() for name, tensor in expected.items()}


def _exported(modules: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    x = _rows(3, 4, 8)
    logits, probabilities = run(modules["exported"], x)
    return {"x": x}, {"OUTPUT__0": logits.numpy(), "OUTPUT__1": probabilities.numpy()}


def _eager(modules: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    x = _rows(4, 2, 8)
    return {"features": x}, {"OUTPUT__0": run(modules["eager"], x).numpy()}


CASES: dict[str, Case] = {
    "ts_mlp": _ts_mlp,
    "ts_named": _ts_named,
    "exported": _exported,
    "eager": _eager,
}


@pytest.mark.parametrize("model", sorted(CASES))
def test_http_results_equal_the_module_run_directly(
    server: RunningServer, modules: dict[str, Any], model: str
) -> None:
    inputs, expected = CASES[model](modules)
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        result = infer(client, httpclient, model, inputs)
    finally:
        client.close()
    for name, value in expected.items():
        np.testing.assert_allclose(result.as_numpy(name), value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", sorted(CASES))
def test_grpc_results_equal_the_module_run_directly(
    server: RunningServer, modules: dict[str, Any], model: str
) -> None:
    inputs, expected = CASES[model](modules)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        result = infer(client, grpcclient, model, inputs)
    for name, value in expected.items():
        np.testing.assert_allclose(result.as_numpy(name), value, rtol=1e-5, atol=1e-6)


def test_exported_program_config_is_auto_completed(server: RunningServer) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        config = client.get_model_config("exported", as_json=True)["config"]
        metadata = client.get_model_metadata("ts_mlp", as_json=True)
    assert config["backend"] == "pytorch"
    assert config["max_batch_size"] == 4
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("x", "TYPE_FP32", ["8"])
    ]
    assert [t["name"] for t in config["output"]] == ["OUTPUT__0", "OUTPUT__1"]
    assert metadata["platform"] == "pytorch_libtorch"


# sequence model -> its client input and output names
SEQUENCE_MODELS = {
    "seq_ts_indexed": ("INPUT__0", "OUTPUT__0"),
    "seq_ts_named": ("INPUT", "OUTPUT"),
    "seq_exported": ("INPUT", "OUTPUT"),
}


def _accumulate(url: str, model: str, sequence_id: int, values: list[int]) -> list[int]:
    """One sequence's running sums, one request per value."""
    input_name, output_name = SEQUENCE_MODELS[model]
    client = httpclient.InferenceServerClient(url)
    sums = []
    try:
        for step, value in enumerate(values):
            tensor = httpclient.InferInput(input_name, [1, 1], "INT32")
            tensor.set_data_from_numpy(np.array([[value]], dtype=np.int32))
            result = client.infer(
                model,
                [tensor],
                sequence_id=sequence_id,
                sequence_start=step == 0,
                sequence_end=step == len(values) - 1,
            )
            sums.append(int(result.as_numpy(output_name)[0, 0]))
    finally:
        client.close()  # in this thread: tritonclient.http's gevent pool belongs to it
    return sums


@pytest.mark.parametrize("model", sorted(SEQUENCE_MODELS))
def test_sequence_models_get_their_implicit_state_and_controls(
    server: RunningServer, model: str
) -> None:
    # 12 sequences over 2 x 4 slots (or 1 x 4): batches mix sequences and some wait a slot.
    sequences = {1000 + n: [n * 100 + step for step in range(6)] for n in range(12)}
    with ThreadPoolExecutor(6) as pool:
        sums = {
            sequence_id: pool.submit(_accumulate, server.http_url, model, sequence_id, values)
            for sequence_id, values in sequences.items()
        }
        for sequence_id, values in sequences.items():
            assert sums[sequence_id].result(timeout=60) == list(np.cumsum(values))


def test_exported_sequence_model_leaves_state_out_of_its_config(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        config = client.get_model_config("seq_exported")
    finally:
        client.close()
    assert [t["name"] for t in config["input"]] == ["INPUT"]
    assert [t["name"] for t in config["output"]] == ["OUTPUT"]


def _counts(server: RunningServer, model: str) -> tuple[int, int]:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    # JSON of a proto3 message leaves out a count of 0 (before the model's first request).
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def test_concurrent_requests_are_batched_and_answered_each(
    server: RunningServer, modules: dict[str, Any]
) -> None:
    threads, per_thread = 8, 5

    def worker(index: int) -> int:
        client = httpclient.InferenceServerClient(server.http_url)
        sent = 0
        try:
            for step in range(per_thread):
                rows = 1 + (index + step) % 2
                x = _rows(100 * index + step, rows, 8)
                result = infer(client, httpclient, "ts_mlp", {"INPUT__0": x})
                expected = run(modules["ts_mlp"], x).numpy()
                np.testing.assert_allclose(result.as_numpy("OUTPUT__0"), expected, rtol=1e-5)
                sent += rows
        finally:
            client.close()  # in this thread: tritonclient.http's gevent pool belongs to it
        return sent

    before = _counts(server, "ts_mlp")
    with ThreadPoolExecutor(threads) as pool:
        rows = sum(pool.map(worker, range(threads)))
    inferences, executions = _counts(server, "ts_mlp")
    assert inferences - before[0] == rows
    assert executions - before[1] < threads * per_thread  # batches held several requests


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.ones((1, 9), np.float32), r"has shape \[1, 9\], model 'ts_mlp' expects \[-1, 8\]"),
        (np.ones((1, 8), np.float64), "has datatype FP64, model 'ts_mlp' expects FP32"),
    ],
)
def test_wrong_shape_or_dtype_is_a_400_and_serving_goes_on(
    server: RunningServer, modules: dict[str, Any], array: np.ndarray, message: str
) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        datatype = np_to_triton_dtype(array.dtype)
        tensor = httpclient.InferInput("INPUT__0", list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        with pytest.raises(InferenceServerException, match=message) as caught:
            client.infer("ts_mlp", [tensor])
        assert caught.value.status() == "400"
        inputs, expected = _ts_mlp(modules)
        result = infer(client, httpclient, "ts_mlp", inputs)
        np.testing.assert_allclose(result.as_numpy("OUTPUT__0"), expected["OUTPUT__0"], rtol=1e-5)
    finally:
        client.close()


def test_wrong_shape_over_grpc_is_invalid_argument(server: RunningServer) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        tensor = grpcclient.InferInput("a", [1, 5], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 5), np.float32))
        other = grpcclient.InferInput("b", [1, 4], "FP32")
        other.set_data_from_numpy(np.ones((1, 4), np.float32))
        with pytest.raises(InferenceServerException, match=r"'a' has shape \[1, 5\]") as caught:
            client.infer("ts_named", [tensor, other])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_instances_serve_the_same_results(tmp_path: Path) -> None:
    module = write_mlp_torchscript(tmp_path / "gpu_mlp")
    with (tmp_path / "gpu_mlp" / "config.pbtxt").open("a") as config:
        config.write("instance_group [{ count: 2, kind: KIND_GPU, gpus: [ 0 ] }]\n")
    x = _rows(5, 4, 8)
    with (
        running_server(tmp_path) as gpu_server,
        grpcclient.InferenceServerClient(gpu_server.grpc_url) as client,
    ):
        result = infer(client, grpcclient, "gpu_mlp", {"INPUT__0": x})
    np.testing.assert_allclose(
        result.as_numpy("OUTPUT__0"), run(module, x).numpy(), rtol=1e-4, atol=1e-5
    )
