"""The cases of Triton's `InputShapeTest` (qa/L0_input_validation) that apply here, with models
made as Triton's QA makes them: a scripted `torch.nn.Identity` whose input names fit neither
forward's argument nor `<name>__<index>` (passed in config order, as Triton does), and inputs
whose data disagree with their declared shape, refused in Triton's words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.server import RunningServer, running_server

PT_IDENTITY = """\
name: "pt_identity"
backend: "pytorch"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 8 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 8 ] } ]
"""
STRINGS = """\
name: "strings"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_STRING, dims: [ 16 ] },
        { name: "INPUT1", data_type: TYPE_STRING, dims: [ 16 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 16 ] } ]
"""


def _strings_model(path: Path) -> None:
    """OUTPUT0 = int(INPUT0) + int(INPUT1) on numbers sent as text, like Triton's
    onnx_object_int32_int32."""
    shape: list[int | str] = ["batch", 16]
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["INPUT0"], ["a"], to=TensorProto.INT32),
            helper.make_node("Cast", ["INPUT1"], ["b"], to=TensorProto.INT32),
            helper.make_node("Add", ["a", "b"], ["OUTPUT0"]),
        ],
        "strings",
        [helper.make_tensor_value_info(n, TensorProto.STRING, shape) for n in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.INT32, shape)],
    )
    generate_models._save(graph, path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("input-shapes")
    torch = pytest.importorskip("torch")
    from tests.pytorch_models import save_torchscript  # needs torch

    save_torchscript(repository / "pt_identity", torch.nn.Identity(), PT_IDENTITY)
    (repository / "strings" / "1").mkdir(parents=True)
    _strings_model(repository / "strings" / "1" / "model.onnx")
    (repository / "strings" / "config.pbtxt").write_text(STRINGS)
    with running_server(repository) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[grpcclient.InferenceServerClient]:
    connection = grpcclient.InferenceServerClient(server.grpc_url)
    yield connection
    connection.close()


def test_inputs_named_after_no_convention_go_in_config_order(
    client: grpcclient.InferenceServerClient,
) -> None:
    data = np.arange(8, dtype=np.float32)[None]
    tensor = grpcclient.InferInput("INPUT0", [1, 8], "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer("pt_identity", [tensor])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_more_bytes_than_the_shape_is_refused_in_tritons_words(
    client: grpcclient.InferenceServerClient,
) -> None:
    tensor = grpcclient.InferInput("INPUT0", [1, 10], "FP32")
    tensor.set_data_from_numpy(np.arange(10, dtype=np.float32)[None])
    tensor.set_shape([1, 8])  # a shape that disagrees with the data
    with pytest.raises(InferenceServerException) as caught:
        client.infer("pt_identity", [tensor])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert (
        "input byte size mismatch for input 'INPUT0' for model 'pt_identity'. Expected 32, got 40"
        in str(caught.value)
    )


@pytest.mark.parametrize(
    ("sent", "words"),
    [
        (14, "expected 16 string elements for inference input '{}' for model 'strings', got 14"),
        (
            18,
            "unexpected number of string elements 17 for inference input '{}' for model "
            "'strings', expecting 16",
        ),
    ],
)
def test_string_elements_that_disagree_with_the_shape_name_every_input(
    client: grpcclient.InferenceServerClient, sent: int, words: str
) -> None:
    text = np.array([[str(i).encode() for i in range(sent)]], dtype=np.object_)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = grpcclient.InferInput(name, [1, sent], "BYTES")
        tensor.set_data_from_numpy(text)
        tensor.set_shape([1, 16])
        inputs.append(tensor)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("strings", inputs)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    # Triton names one of them (the one its hash map yields first); both are named here.
    for name in ("INPUT0", "INPUT1"):
        assert words.format(name) in str(caught.value)
