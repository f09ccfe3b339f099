"""Hand-built ModelInferRequest messages through the raw stub: typed contents and bad input.

Each bad request must get the right status code, and the server must keep serving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from tests.integration.grpc_helpers import (
    A,
    B,
    assert_serving,
    output,
    reference,
    simple_request,
    stub,
)
from tests.integration.server import RunningServer, running_server

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def test_typed_contents_int32(server: RunningServer) -> None:
    message = service_pb2.ModelInferRequest(model_name="simple", id="typed")
    for name, data in (("INPUT0", A), ("INPUT1", B)):
        tensor = message.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        tensor.contents.int_contents.extend(data.reshape(-1).tolist())
    with stub(server.grpc_url) as service:
        response = service.ModelInfer(message)
    assert response.id == "typed"
    np.testing.assert_array_equal(output(response, "OUTPUT0"), A + B)
    np.testing.assert_array_equal(output(response, "OUTPUT1"), A - B)


def test_typed_contents_fp32_matches_onnxruntime(
    server: RunningServer, model_repository: Path
) -> None:
    x = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    message = service_pb2.ModelInferRequest(model_name="mlp")
    tensor = message.inputs.add(name="input", datatype="FP32", shape=[2, 8])
    tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
    with stub(server.grpc_url) as service:
        response = service.ModelInfer(message)
    expected = reference(model_repository, "mlp", {"input": x})["output"]
    np.testing.assert_allclose(output(response, "output"), expected, rtol=1e-6, atol=1e-6)


def _typed(message: Any, field: str, values: list[Any]) -> Any:
    """`message` with its raw contents replaced by `values` in `field` of every input."""
    del message.raw_input_contents[:]
    for tensor in message.inputs:
        getattr(tensor.contents, field).extend(values)
    return message


def _edit(change: Callable[[Any], object]) -> Any:
    """A valid `simple` request, changed in place by `change` (its result is ignored)."""
    message = simple_request()
    change(message)
    return message


BAD_REQUESTS: dict[str, tuple[Any, grpc.StatusCode]] = {
    "raw-count-mismatch": (_edit(lambda m: m.raw_input_contents.pop()), INVALID),
    "raw-byte-size": (_edit(lambda m: m.raw_input_contents.__setitem__(1, b"\0" * 60)), INVALID),
    "raw-and-typed": (_edit(lambda m: m.inputs[0].contents.int_contents.extend([1] * 16)), INVALID),
    "typed-wrong-field": (_edit(lambda m: _typed(m, "fp32_contents", [1.0] * 16)), INVALID),
    "typed-two-fields": (
        _edit(lambda m: _typed(_typed(m, "int_contents", [1] * 16), "int64_contents", [1] * 16)),
        INVALID,
    ),
    "typed-count": (_edit(lambda m: _typed(m, "int_contents", [1] * 15)), INVALID),
    "no-data": (_edit(lambda m: m.raw_input_contents.__delitem__(slice(None))), INVALID),
    "unknown-datatype": (_edit(lambda m: setattr(m.inputs[0], "datatype", "FP8")), INVALID),
    "wrong-datatype": (_edit(lambda m: setattr(m.inputs[0], "datatype", "FP32")), INVALID),
    "negative-dim": (_edit(lambda m: m.inputs[0].shape.__setitem__(1, -16)), INVALID),
    "unknown-input": (_edit(lambda m: setattr(m.inputs[1], "name", "INPUT9")), INVALID),
    "duplicate-input": (_edit(lambda m: setattr(m.inputs[1], "name", "INPUT0")), INVALID),
    "unknown-output": (_edit(lambda m: m.outputs.add(name="OUTPUT9")), INVALID),
    "empty-parameter": (_edit(lambda m: m.parameters.get_or_create("p")), INVALID),
    "unknown-model": (_edit(lambda m: setattr(m, "model_name", "no_such_model")), NOT_FOUND),
    "unknown-version": (_edit(lambda m: setattr(m, "model_version", "9")), NOT_FOUND),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_its_status_and_server_keeps_serving(
    server: RunningServer, case: str
) -> None:
    message, code = BAD_REQUESTS[case]
    with stub(server.grpc_url) as service, pytest.raises(grpc.RpcError) as caught:
        service.ModelInfer(message)
    assert caught.value.code() == code, caught.value.details()
    assert caught.value.details()
    assert_serving(server.grpc_url)
    assert "unhandled error in ModelInfer" not in server.log_text()


def test_stream_survives_malformed_requests(server: RunningServer) -> None:
    bad = [BAD_REQUESTS[c][0] for c in ("raw-byte-size", "typed-wrong-field", "unknown-model")]
    sent: list[Any] = []
    for index in range(8):
        sent.append(simple_request(f"good-{index}"))
        if index in (1, 3, 4):
            sent.append(bad.pop())
    with stub(server.grpc_url) as service:
        responses = list(service.ModelStreamInfer(iter(sent)))
    assert len(responses) == len(sent)
    for request, response in zip(sent, responses, strict=True):
        if request.id.startswith("good"):
            assert response.error_message == ""
            assert response.infer_response.id == request.id
            np.testing.assert_array_equal(output(response.infer_response, "OUTPUT0"), A + B)
        else:
            assert response.error_message
    assert_serving(server.grpc_url)


@pytest.fixture(scope="module")
def wide_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with `wide`: simple's graph with a dynamic width and an auto-completed config."""
    import generate_models  # examples/, put on sys.path by tests/conftest.py

    repository = tmp_path_factory.mktemp("wide")
    generate_models.simple_model(repository / "wide" / "1" / "model.onnx", width="width")
    with running_server(repository, "--grpc-max-message-bytes", str(64 * 1024 * 1024)) as running:
        yield running


def test_messages_beyond_grpc_default_limit(wide_server: RunningServer) -> None:
    a = np.arange(3 * 1024 * 1024, dtype=np.int32).reshape(1, -1)  # 12 MiB per input
    message = service_pb2.ModelInferRequest(model_name="wide")
    for name in ("INPUT0", "INPUT1"):
        message.inputs.add(name=name, datatype="INT32", shape=a.shape)
    message.raw_input_contents.extend([a.tobytes(), a.tobytes()])
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(wide_server.grpc_url, options=options) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=service_pb2.ModelInferRequest.SerializeToString,
            response_deserializer=service_pb2.ModelInferResponse.FromString,
        )
        response = call(message)
    np.testing.assert_array_equal(output(response, "OUTPUT0"), a + a)
    np.testing.assert_array_equal(output(response, "OUTPUT1"), np.zeros_like(a))
