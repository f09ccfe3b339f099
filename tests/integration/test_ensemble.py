"""Ensembles on the real server with tritonclient over HTTP and gRPC: outputs equal to the
steps called by hand, failing steps, statistics, batching across ensemble requests, and
unload/reload of a composing model in explicit mode."""

from __future__ import annotations

import json
import queue
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import generate_models
from tests.integration.http_helpers import post_json
from tests.integration.infer_helpers import infer
from tests.integration.server import RunningServer, running_server

# An ensemble whose input dims are loose ([-1]) so a wrong width reaches step 0, which refuses it.
LOOSE_CONFIG = """name: "loose"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "X", data_type: TYPE_FP32, dims: [ 4 ] } ]
ensemble_scheduling { step [ { model_name: "pre", model_version: -1,
  input_map { key: "INPUT0", value: "IN" }, output_map { key: "OUTPUT0", value: "X" } } ] }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Explicit mode; `--load-model onnx_pipeline` loads its four composing models with it.
    Composing models wait up to 20 ms to form batches, so concurrent ensemble requests batch."""
    repository = tmp_path_factory.mktemp("ensembles")
    generate_models.write_onnx_pipeline(repository, queue_delay_us=20_000)
    (repository / "loose" / "1").mkdir(parents=True)
    (repository / "loose" / "config.pbtxt").write_text(LOOSE_CONFIG)
    args = ("--model-control-mode", "explicit", "--load-model", "onnx_pipeline")
    with running_server(repository, *args, "--load-model", "loose") as running:
        yield running


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(server.http_url)
    yield client
    client.close()


@pytest.fixture
def grpc(server: RunningServer) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    yield client
    client.close()


@pytest.fixture(params=["http", "grpc"])
def either(request: pytest.FixtureRequest) -> tuple[Any, ModuleType]:
    """Runs the test over HTTP and over gRPC: a client and its tritonclient module."""
    client = request.getfixturevalue(request.param)
    return client, httpclient if request.param == "http" else grpcclient


def rows(count: int = 3) -> np.ndarray:
    return np.random.default_rng(count).standard_normal((count, 4)).astype(np.float32)


def by_hand(client: Any, module: Any, data: np.ndarray) -> dict[str, np.ndarray]:
    """The pipeline's steps, each called as its own model."""
    x = infer(client, module, "pre", {"INPUT0": data}).as_numpy("OUTPUT0")
    a = infer(client, module, "mlp_a", {"input": x}).as_numpy("output")
    b = infer(client, module, "mlp_b", {"input": x}).as_numpy("output")
    post = infer(client, module, "post", {"INPUT0": a, "INPUT1": b})
    return {"SUM": post.as_numpy("OUTPUT0"), "DIFF": post.as_numpy("OUTPUT1")}


def test_outputs_equal_the_steps_called_by_hand(
    either: tuple[Any, ModuleType],
) -> None:
    client, module = either
    data = rows()
    answer = infer(client, module, "onnx_pipeline", {"IN": data})
    expected = by_hand(client, module, data)
    for name in ("SUM", "DIFF"):
        np.testing.assert_allclose(answer.as_numpy(name), expected[name], rtol=1e-6)
    assert answer.get_response()  # a full response, not an error


def test_only_the_requested_output_comes_back(http: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("IN", [1, 4], "FP32")
    tensor.set_data_from_numpy(rows(1))
    answer = http.infer(
        "onnx_pipeline", [tensor], outputs=[httpclient.InferRequestedOutput("DIFF")]
    )
    assert [o["name"] for o in answer.get_response()["outputs"]] == ["DIFF"]


def test_metadata_and_config_over_http_and_grpc(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    metadata = http.get_model_metadata("onnx_pipeline")
    assert metadata["platform"] == "ensemble"
    assert [i["name"] for i in metadata["inputs"]] == ["IN"]
    assert [o["shape"] for o in metadata["outputs"]] == [[-1, 4], [-1, 4]]
    assert grpc.get_model_metadata("onnx_pipeline").platform == "ensemble"
    config = http.get_model_config("onnx_pipeline")
    steps = config["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == ["pre", "mlp_a", "mlp_b", "post"]
    grpc_config = grpc.get_model_config("onnx_pipeline").config
    assert grpc_config.platform == "ensemble"
    assert grpc_config.ensemble_scheduling.step[3].output_map["OUTPUT1"] == "DIFF"


def test_a_failing_step_keeps_its_code_and_names_the_step(
    either: tuple[Any, ModuleType],
) -> None:
    client, module = either
    with pytest.raises(InferenceServerException) as info:
        infer(client, module, "loose", {"IN": np.ones((1, 5), np.float32)})
    assert "ensemble 'loose' step 0 (model 'pre') failed" in info.value.message()
    assert "has shape [1, 5]" in info.value.message()
    assert info.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    # The ensemble and its step go on serving the next request.
    good = infer(client, module, "loose", {"IN": np.ones((1, 4), np.float32)})
    np.testing.assert_array_equal(good.as_numpy("X"), np.full((1, 4), 3, np.float32))


def stats(client: httpclient.InferenceServerClient, model: str) -> dict[str, Any]:
    document: dict[str, Any] = client.get_inference_statistics(model)["model_stats"][0]
    return document


def send_concurrently(url: str, count: int) -> None:
    """`count` ensemble requests in flight at once (gRPC async_infer)."""
    answers: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    try:
        for index in range(count):
            tensor = grpcclient.InferInput("IN", [1, 4], "FP32")
            tensor.set_data_from_numpy(rows(1) + index)
            client.async_infer(
                "onnx_pipeline", [tensor], lambda result, error: answers.put(error or result)
            )
        for _ in range(count):
            answer = answers.get(timeout=30)
            assert not isinstance(answer, InferenceServerException), answer
    finally:
        client.close()


def test_statistics_and_batching_across_ensemble_requests(
    server: RunningServer, http: httpclient.InferenceServerClient
) -> None:
    models = ("onnx_pipeline", "pre", "mlp_a", "post")
    before = {m: stats(http, m) for m in models}
    send_concurrently(server.grpc_url, 16)
    after = {m: stats(http, m) for m in models}

    def delta(model: str, *path: str) -> int:
        old: Any = before[model]
        new: Any = after[model]
        for key in path:
            old, new = old[key], new[key]
        return int(new) - int(old)

    # The ensemble counts requests but no executions of its own (as in Triton).
    assert delta("onnx_pipeline", "inference_stats", "success", "count") == 16
    assert delta("onnx_pipeline", "execution_count") == 0
    assert after["onnx_pipeline"]["batch_stats"] == []
    for model in models[1:]:
        assert delta(model, "inference_stats", "success", "count") == 16
        assert delta(model, "inference_count") == 16
    # Composing models with a dynamic batcher put steps of several ensemble requests together;
    # `post` has none, so it runs each alone.
    for model in ("pre", "mlp_a"):
        assert 1 <= delta(model, "execution_count") < 16
    assert delta("post", "execution_count") == 16


def index(server: RunningServer) -> dict[str, dict[str, str]]:
    status, listed = post_json(server.http_port, "/v2/repository/index", {})
    assert status == 200
    return {row["name"]: row for row in listed}


def test_unloading_a_composing_model_makes_the_ensemble_unavailable_until_it_returns(
    server: RunningServer, http: httpclient.InferenceServerClient
) -> None:
    data = rows()
    expected = infer(http, httpclient, "onnx_pipeline", {"IN": data}).as_numpy("SUM")
    http.unload_model("mlp_b")
    try:
        assert not http.is_model_ready("onnx_pipeline")
        row = index(server)["onnx_pipeline"]
        assert row["state"] == "UNAVAILABLE" and "mlp_b" in row["reason"]
        with pytest.raises(InferenceServerException) as info:
            infer(http, httpclient, "onnx_pipeline", {"IN": data})
        assert info.value.status() == "503" and "mlp_b" in info.value.message()
        assert http.is_model_ready("mlp_a")  # the other composing models keep serving
    finally:
        http.load_model("mlp_b")
    assert http.is_model_ready("onnx_pipeline")
    answer = infer(http, httpclient, "onnx_pipeline", {"IN": data}).as_numpy("SUM")
    np.testing.assert_allclose(answer, expected, rtol=1e-6)


def test_reloading_a_composing_model_keeps_the_ensemble_serving(
    http: httpclient.InferenceServerClient,
) -> None:
    http.load_model("mlp_a")  # a reload of a serving model
    assert http.is_model_ready("onnx_pipeline")
    assert infer(http, httpclient, "onnx_pipeline", {"IN": rows()}).as_numpy("SUM").shape == (3, 4)


def test_an_ensemble_whose_step_does_not_fit_is_unavailable_with_the_reason(
    server: RunningServer, http: httpclient.InferenceServerClient
) -> None:
    config = {
        "name": "loose",
        "platform": "ensemble",
        "max_batch_size": 8,
        "input": [{"name": "IN", "data_type": "TYPE_INT32", "dims": [4]}],
        "output": [{"name": "X", "data_type": "TYPE_FP32", "dims": [4]}],
        "ensemble_scheduling": {
            "step": [
                {
                    "model_name": "pre",
                    "model_version": -1,
                    "input_map": {"INPUT0": "IN"},
                    "output_map": {"OUTPUT0": "X"},
                }
            ]
        },
    }
    with pytest.raises(InferenceServerException) as info:
        http.load_model("loose", config=json.dumps(config))
    message = info.value.message()
    assert "step 0 (model 'pre') input 'INPUT0' expects FP32" in message
    assert "tensor 'IN' from ensemble input 'IN' is INT32" in message
    # A failed reload keeps the version that was serving.
    assert http.is_model_ready("loose")


def test_loading_an_ensemble_of_models_missing_from_the_repository_is_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "lonely" / "1").mkdir(parents=True)
    (tmp_path / "lonely" / "config.pbtxt").write_text(
        LOOSE_CONFIG.replace('"loose"', '"lonely"').replace('"pre"', '"absent"')
    )
    with running_server(tmp_path, "--model-control-mode", "explicit") as running:
        client = httpclient.InferenceServerClient(running.http_url)
        try:
            with pytest.raises(InferenceServerException) as info:
                client.load_model("lonely")
            assert "step 0 (model 'absent'): the composing model is not available" in (
                info.value.message()
            )
            row = index(running)["lonely"]
            assert row["state"] == "UNAVAILABLE" and "absent" in row["reason"]
        finally:
            client.close()


def test_the_example_pipeline_with_python_steps_equals_its_steps_by_hand() -> None:
    """examples/model_repository's `pipeline`: Python preprocess, two ONNX branches, Python
    postprocess; loading it in explicit mode loads its four composing models."""
    repository = Path(__file__).resolve().parents[2] / "examples" / "model_repository"
    args = ("--model-control-mode", "explicit", "--load-model", "pipeline")
    with running_server(repository, *args) as running:
        client = grpcclient.InferenceServerClient(running.grpc_url)
        try:
            raw = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
            answer = infer(client, grpcclient, "pipeline", {"RAW": raw})
            features = (raw - raw.mean(1, keepdims=True)) / (raw.std(1, keepdims=True) + 1e-6)
            a = infer(client, grpcclient, "pipeline_branch_a", {"input": features})
            b = infer(client, grpcclient, "pipeline_branch_b", {"input": features})
            scores = (a.as_numpy("output") + b.as_numpy("output")) / 2
            np.testing.assert_allclose(answer.as_numpy("SCORES"), scores, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(answer.as_numpy("LABEL")[:, 0], scores.argmax(1))
        finally:
            client.close()


SEQUENCE_ENSEMBLE = """name: "running_sum"
platform: "ensemble"
max_batch_size: 8
input [ { name: "VALUE", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "SUM", data_type: TYPE_INT32, dims: [ 1 ] } ]
ensemble_scheduling { step [ { model_name: "sequence_accumulate", model_version: -1,
  input_map { key: "INPUT", value: "VALUE" }, output_map { key: "OUTPUT", value: "SUM" } } ] }
"""


def test_sequence_parameters_pass_through_to_a_stateful_step(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "model_repository"
    shutil.copytree(examples / "sequence_accumulate", tmp_path / "sequence_accumulate")
    (tmp_path / "running_sum" / "1").mkdir(parents=True)
    (tmp_path / "running_sum" / "config.pbtxt").write_text(SEQUENCE_ENSEMBLE)
    with running_server(tmp_path) as running:
        client = grpcclient.InferenceServerClient(running.grpc_url)
        try:
            sums = []
            for index, value in enumerate((1, 2, 3)):
                tensor = grpcclient.InferInput("VALUE", [1, 1], "INT32")
                tensor.set_data_from_numpy(np.array([[value]], np.int32))
                answer = client.infer(
                    "running_sum",
                    [tensor],
                    sequence_id=42,
                    sequence_start=index == 0,
                    sequence_end=index == 2,
                )
                sums.append(int(answer.as_numpy("SUM")[0, 0]))
            assert sums == [1, 3, 6]  # the composing model saw one sequence
        finally:
            client.close()
