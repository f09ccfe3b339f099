"""Hostile input to PyTorch and TensorFlow models through the real server: wrong dtype, shape,
name or size, BYTES to a numeric model and empty batches get a 400 naming the problem (never a
500 from the framework), over HTTP and gRPC, and the server keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tests.integration.http_helpers import post_json
from tests.integration.server import RunningServer, running_server
from tests.integration.test_hostile_inputs import tensor

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from tests import pytorch_models, tensorflow_models  # after the skips: they import both

# model -> (input name, its width); both take FP32 [-1, width].
MODELS = {"torch_mlp": ("INPUT__0", 8), "tf_mlp": ("x", 8)}
# A TensorFlow signature without any shape: whatever shape the client sends reaches TF.
ANY_RANK = "tf_any_rank"
ANY_RANK_CONFIG = """
max_batch_size: 4
input [ { name: "x", data_type: TYPE_FP32, dims: [ -1, -1 ] } ]
output [ { name: "doubled", data_type: TYPE_FP32, dims: [ -1, -1 ] } ]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("hostile_frameworks")
    pytorch_models.write_mlp_torchscript(root / "torch_mlp")
    tensorflow_models.mlp_model(root / "tf_mlp" / "1")
    tensorflow_models.any_rank_model(root / ANY_RANK / "1")
    (root / ANY_RANK / "config.pbtxt").write_text(ANY_RANK_CONFIG)
    with running_server(root) as running:
        yield running


def cases(name: str, width: int) -> list[tuple[dict[str, Any], str]]:
    return [
        (tensor(name, "INT32", [1, width], [1] * width), "has datatype INT32"),
        (tensor(name, "BYTES", [1, width], ["a"] * width), "has datatype BYTES"),
        (tensor(name, "FP32", [1, width - 1], [0.5] * (width - 1)), "has shape"),
        (tensor(name, "FP32", [3], [0.5] * 3), "has shape [3]"),  # no batch axis
        (tensor(name, "FP32", [0, width], []), "has batch size 0"),
        (tensor(name, "FP32", [1, width], [0.5] * (width + 1)), "elements in 'data'"),
        (tensor("zzz", "FP32", [1, width], [0.5] * width), "unexpected inference input 'zzz'"),
        (tensor(name, "FP32", [100, width], [0.5] * 100 * width), "has batch size 100"),
    ]


@pytest.mark.parametrize("model", MODELS)
def test_bad_inputs_are_400_over_http(server: RunningServer, model: str) -> None:
    name, width = MODELS[model]
    for bad, expected in cases(name, width):
        status, body = post_json(server.http_port, f"/v2/models/{model}/infer", {"inputs": [bad]})
        assert (status, expected in body["error"]) == (400, True), (bad, body)
    good = {"inputs": [tensor(name, "FP32", [2, width], [0.5] * 2 * width)]}
    status, body = post_json(server.http_port, f"/v2/models/{model}/infer", good)
    assert (status, body["outputs"][0]["shape"]) == (200, [2, 4])


@pytest.mark.parametrize("model", MODELS)
def test_bad_inputs_are_invalid_argument_over_grpc(server: RunningServer, model: str) -> None:
    name, width = MODELS[model]
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for datatype, shape, raw in [
            ("FP32", [1, width], b"\0" * (4 * width - 1)),  # a byte short
            ("INT64", [1, width], b"\0" * (8 * width)),
            ("BYTES", [1, 1], b"\1\0\0\0a"),
            ("FP32", [0, width], b""),
        ]:
            message = pb.ModelInferRequest(model_name=model)
            message.inputs.add(name=name, datatype=datatype, shape=shape)
            message.raw_input_contents.append(raw)
            with pytest.raises(grpc.RpcError) as raised:
                stub.ModelInfer(message, timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (datatype, shape)


def test_any_rank_tensorflow_model_takes_odd_shapes(server: RunningServer) -> None:
    """Shapes the config allows ([-1, -1] per row) run, empty dims included; others are 400."""
    path = f"/v2/models/{ANY_RANK}/infer"
    for shape in ([1, 0, 5], [2, 3, 1], [1, 1, 100_000], [4, 0, 0]):
        count = 1
        for dim in shape:
            count *= dim
        inputs = {"inputs": [tensor("x", "FP32", shape, [1.5] * count)]}
        status, body = post_json(server.http_port, path, inputs)
        assert (status, body["outputs"][0]["data"]) == (200, [3.0] * count), body
    for shape in ([1, 2], [1, 1, 1, 1], [5, 1, 1]):
        inputs = {"inputs": [tensor("x", "FP32", shape, [1.5] * shape[0])]}
        status, body = post_json(server.http_port, path, inputs)
        assert (status, "x" in body["error"]) == (400, True), body
