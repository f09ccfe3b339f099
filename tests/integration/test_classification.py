"""The classification extension through the real server and tritonclient (HTTP and gRPC):
top-K `"score:index[:label]"` BYTES answers, batched and not, labels from `label_filename`,
and the requests Triton refuses refused the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto
from tritonclient.utils import InferenceServerException

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.http_helpers import post_json
from tests.integration.server import RunningServer, running_server


def _config(
    name: str, max_batch_size: int, data_type: str, dims: int, output_extra: str = ""
) -> str:
    """An identity model's config: INPUT0 -> OUTPUT0, both `data_type` with `dims` elements."""
    tensor = f"data_type: {data_type}, dims: [ {dims} ]"
    return (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch_size}\n'
        f'input [ {{ name: "INPUT0", {tensor} }} ]\n'
        f'output [ {{ name: "OUTPUT0", {tensor}{output_extra} }} ]\n'
    )


SCORES = _config("scores", 8, "TYPE_FP32", 4, ', label_filename: "labels.txt"')
COUNTS = _config("counts", 0, "TYPE_INT32", 5)
WORDS = _config("words", 8, "TYPE_STRING", 4)
RANKED = """\
name: "ranked"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 4 ], label_filename: "labels.txt" } ]
ensemble_scheduling { step [ { model_name: "scores" model_version: -1
  input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "OUT" } } ] }
"""


def _model(repository: Path, name: str, datatype: int, dims: list[int | str], config: str) -> None:
    generate_models.identity_model(repository / name / "1" / "model.onnx", datatype, dims)
    (repository / name / "config.pbtxt").write_text(config)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("classification")
    _model(repository, "scores", TensorProto.FLOAT, ["batch", 4], SCORES)
    # The third class has an empty line: no label.
    (repository / "scores" / "labels.txt").write_text("cat\ndog\n\nbird\n")
    _model(repository, "counts", TensorProto.INT32, [5], COUNTS)
    # An ensemble over `scores` with labels of its own, read from its own folder.
    (repository / "ranked" / "1").mkdir(parents=True)
    (repository / "ranked" / "config.pbtxt").write_text(RANKED)
    (repository / "ranked" / "labels.txt").write_text("w\nx\ny\nz\n")
    _model(repository, "words", TensorProto.STRING, ["batch", 4], WORDS)
    with running_server(repository) as running:
        yield running


@pytest.fixture(params=["http", "http-binary", "grpc"])
def client(request: pytest.FixtureRequest, server: RunningServer) -> Iterator[tuple[Any, Any]]:
    module: Any = grpcclient if request.param == "grpc" else httpclient
    url = server.grpc_url if module is grpcclient else server.http_url
    connection = module.InferenceServerClient(url)
    yield connection, request.param
    connection.close()


def _infer(client: tuple[Any, Any], model: str, data: np.ndarray, count: int) -> Any:
    connection, kind = client
    module: Any = grpcclient if kind == "grpc" else httpclient
    datatype = {np.float32: "FP32", np.int32: "INT32", np.object_: "BYTES"}[data.dtype.type]
    tensor = module.InferInput("INPUT0", list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    if kind == "grpc":
        wanted = module.InferRequestedOutput("OUTPUT0", class_count=count)
    else:
        wanted = module.InferRequestedOutput(
            "OUTPUT0", binary_data=kind == "http-binary", class_count=count
        )
    return connection.infer(model, [tensor], outputs=[wanted])


def _strings(result: Any) -> list[Any]:
    array = result.as_numpy("OUTPUT0")
    decode = np.vectorize(lambda e: e.decode() if isinstance(e, bytes) else e, otypes=[object])
    return decode(array).tolist()  # type: ignore[no-any-return]


def _datatype(result: Any, kind: str) -> str:
    output = result.get_output("OUTPUT0")
    return str(output.datatype if kind == "grpc" else output["datatype"])


def test_a_batch_answers_the_top_k_of_each_row_with_labels(client: tuple[Any, Any]) -> None:
    scores = np.array([[0.1, 0.7, 0.15, 0.05], [0.5, 0.0, 0.25, 1.0]], np.float32)
    result = _infer(client, "scores", scores, 3)
    assert _datatype(result, client[1]) == "BYTES"
    assert _strings(result) == [
        ["0.700000:1:dog", "0.150000:2", "0.100000:0:cat"],
        ["1.000000:3:bird", "0.500000:0:cat", "0.250000:2"],
    ]


def test_an_unbatched_model_answers_k_elements_and_k_is_clamped(
    client: tuple[Any, Any],
) -> None:
    result = _infer(client, "counts", np.array([4, 9, -2, 9, 0], np.int32), 7)
    # Five classes: a K of 7 answers all five, as Triton does.
    assert _strings(result) == ["9:1", "9:3", "4:0", "0:4", "-2:2"]


@pytest.mark.parametrize("count", [-1, -5])
def test_a_k_that_is_not_positive_is_a_client_error(client: tuple[Any, Any], count: int) -> None:
    with pytest.raises(InferenceServerException, match="positive integer") as caught:
        _infer(client, "scores", np.zeros((1, 4), np.float32), count)
    assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")


def test_a_string_output_cannot_be_classified(client: tuple[Any, Any]) -> None:
    words = np.array([[b"a", b"b", b"c", b"d"]], dtype=np.object_)
    with pytest.raises(InferenceServerException, match="unsupported type 'BYTES'") as caught:
        _infer(client, "words", words, 2)
    assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")


@pytest.mark.parametrize("value", ["2", 1.5, True, [2]])
def test_a_k_of_the_wrong_json_type_is_400(server: RunningServer, value: object) -> None:
    body = {
        "inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
        "outputs": [{"name": "OUTPUT0", "parameters": {"classification": value}}],
    }
    status, answer = post_json(server.http_port, "/v2/models/scores/infer", body)
    assert status == 400
    assert "positive integer" in answer["error"]


def test_the_json_answer_is_as_triton_documents_it(server: RunningServer) -> None:
    body = {
        "inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 3, 0, 2]}],
        "outputs": [{"name": "OUTPUT0", "parameters": {"classification": 2}}],
    }
    status, answer = post_json(server.http_port, "/v2/models/scores/infer", body)
    assert status == 200
    (output,) = answer["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [1, 2]
    assert output["data"] == ["3.000000:1:dog", "2.000000:3:bird"]


def test_server_metadata_lists_the_extension(server: RunningServer) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        assert "classification" in http.get_server_metadata()["extensions"]
        assert "classification" in grpc.get_server_metadata().extensions
    finally:
        http.close()
        grpc.close()


def test_an_ensemble_output_is_ranked_with_its_own_labels(server: RunningServer) -> None:
    body = {
        "inputs": [{"name": "IN", "shape": [1, 4], "datatype": "FP32", "data": [1, 3, 0, 2]}],
        "outputs": [{"name": "OUT", "parameters": {"classification": 2}}],
    }
    status, answer = post_json(server.http_port, "/v2/models/ranked/infer", body)
    assert status == 200, answer
    assert answer["outputs"][0]["data"] == ["3.000000:1:x", "2.000000:3:z"]
