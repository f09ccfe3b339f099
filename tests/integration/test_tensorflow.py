"""TensorFlow SavedModels served by the real server, called with tritonclient HTTP and gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests import tensorflow_models
from tests.integration.infer_helpers import infer_inputs
from tests.integration.server import RunningServer, running_server

pytest.importorskip("tensorflow")

CONFIGS = {
    # Only batching and instances given: inputs and outputs come from the signature.
    "mlp_batched": "max_batch_size: 16\n"
    "dynamic_batching { max_queue_delay_microseconds: 5000 }\n"
    "instance_group [{ count: 2, kind: KIND_CPU }]\n",
    "two_difference": 'parameters { key: "TF_SIGNATURE_DEF" '
    'value { string_value: "difference" } }\n',
    # The config allows any width; the graph only takes 8.
    "mlp_loose": 'max_batch_size: 4\ninput [{ name: "x", data_type: TYPE_FP32, dims: [ -1 ] }]\n'
    'output [{ name: "y", data_type: TYPE_FP32, dims: [ 4 ] }]\n',
}
BUILDERS = {
    "mlp": tensorflow_models.mlp_model,
    "mlp_batched": tensorflow_models.mlp_model,
    "mlp_loose": tensorflow_models.mlp_model,
    "two": tensorflow_models.two_signature_model,
    "two_difference": tensorflow_models.two_signature_model,
    "strings": tensorflow_models.string_model,
}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tensorflow_repository")
    for name, build in BUILDERS.items():
        build(root / name / "1")
        if name in CONFIGS:
            (root / name / "config.pbtxt").write_text(f'name: "{name}"\n{CONFIGS[name]}')
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


def _saved_model(repository: Path, name: str) -> Path:
    return repository / name / "1" / tensorflow_models.SAVED_MODEL


def _floats(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_autocompleted_config_is_served(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    config: dict[str, Any] = client.get_model_config("mlp")
    assert config["platform"] == "tensorflow_savedmodel"
    assert config["backend"] == "tensorflow"
    assert config["max_batch_size"] == 4
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("x", "TYPE_FP32", [8])
    ]
    batched: dict[str, Any] = client.get_model_config("mlp_batched")
    assert batched["max_batch_size"] == 16
    assert [t["name"] for t in batched["output"]] == ["y"]
    client.close()


def test_http_results_equal_tensorflow(server: RunningServer, repository: Path) -> None:
    x = _floats(0, (3, 8))
    client = httpclient.InferenceServerClient(server.http_url)
    result = client.infer("mlp", infer_inputs(httpclient, {"x": x}))
    client.close()
    expected = tensorflow_models.call(_saved_model(repository, "mlp"), x=x)
    np.testing.assert_array_equal(result.as_numpy("y"), expected["y"])


def test_grpc_returns_only_the_requested_output(server: RunningServer, repository: Path) -> None:
    a, b = _floats(1, (2, 4)), _floats(2, (2, 4))
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        every = client.infer("two", infer_inputs(grpcclient, {"a": a, "b": b}))
        only = client.infer(
            "two",
            infer_inputs(grpcclient, {"a": a, "b": b}),
            outputs=[grpcclient.InferRequestedOutput("sum")],
        )
    expected = tensorflow_models.call(_saved_model(repository, "two"), a=a, b=b)
    np.testing.assert_array_equal(every.as_numpy("sum"), expected["sum"])
    np.testing.assert_array_equal(every.as_numpy("scaled"), expected["scaled"])
    np.testing.assert_array_equal(only.as_numpy("sum"), expected["sum"])
    assert only.as_numpy("scaled") is None


def test_signature_chosen_in_config(server: RunningServer, repository: Path) -> None:
    a, b = _floats(3, (1, 4)), _floats(4, (1, 4))
    client = httpclient.InferenceServerClient(server.http_url)
    result = client.infer("two_difference", infer_inputs(httpclient, {"a": a, "b": b}))
    client.close()
    expected = tensorflow_models.call(
        _saved_model(repository, "two_difference"), "difference", a=a, b=b
    )
    np.testing.assert_array_equal(result.as_numpy("diff"), expected["diff"])


def test_strings_over_http_and_grpc(server: RunningServer) -> None:
    # Batched scalars: the signature takes [None], so the config dims are [].
    text = np.array([b"tensor", b"\xff\x00flow"], dtype=np.object_)
    http = httpclient.InferenceServerClient(server.http_url)
    http_result = http.infer("strings", infer_inputs(httpclient, {"text": text}))
    http.close()
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        grpc_result = client.infer("strings", infer_inputs(grpcclient, {"text": text}))
    for result in (http_result, grpc_result):
        assert result.as_numpy("upper").tolist() == [b"TENSOR", b"\xff\x00FLOW"]
        np.testing.assert_array_equal(result.as_numpy("length"), [6, 6])


def test_concurrent_requests_are_batched(server: RunningServer, repository: Path) -> None:
    threads, per_thread = 8, 6
    saved_model = _saved_model(repository, "mlp_batched")

    def worker(index: int) -> list[tuple[np.ndarray, np.ndarray]]:
        client = httpclient.InferenceServerClient(server.http_url)
        answers = []
        try:
            for step in range(per_thread):
                x = _floats(100 * index + step, (1 + step % 3, 8))
                answers.append(
                    (
                        x,
                        client.infer("mlp_batched", infer_inputs(httpclient, {"x": x})).as_numpy(
                            "y"
                        ),
                    )
                )
        finally:
            client.close()  # in this thread: tritonclient.http's gevent pool belongs to it
        return answers

    with ThreadPoolExecutor(threads) as pool:
        answers = [pair for pairs in pool.map(worker, range(threads)) for pair in pairs]
    stacked = np.concatenate([x for x, _ in answers])
    expected = tensorflow_models.call(saved_model, x=stacked)["y"]
    np.testing.assert_allclose(
        np.concatenate([y for _, y in answers]), expected, rtol=1e-5, atol=1e-5
    )
    client = httpclient.InferenceServerClient(server.http_url)
    stats = client.get_inference_statistics("mlp_batched")["model_stats"][0]
    client.close()
    assert int(stats["inference_count"]) == len(stacked)
    assert int(stats["execution_count"]) < threads * per_thread  # batches held several


def test_shape_the_graph_rejects_is_a_client_error(server: RunningServer) -> None:
    wide = _floats(5, (2, 9))
    client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException, match="TensorFlow rejected") as http_error:
        client.infer("mlp_loose", infer_inputs(httpclient, {"x": wide}))
    assert http_error.value.status() == "400"
    with (
        grpcclient.InferenceServerClient(server.grpc_url) as grpc_client,
        pytest.raises(InferenceServerException, match="TensorFlow rejected") as grpc_error,
    ):
        grpc_client.infer("mlp_loose", infer_inputs(grpcclient, {"x": wide}))
    assert grpc_error.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    good = client.infer("mlp_loose", infer_inputs(httpclient, {"x": _floats(6, (2, 8))}))
    client.close()
    assert good.as_numpy("y").shape == (2, 4)
