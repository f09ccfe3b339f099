"""Protocol behaviour that Triton's own HTTP/gRPC QA cases check: raw binary requests
(`Inference-Header-Content-Length: 0`), duplicate requested outputs, and BYTES data that
ONNX Runtime cannot take."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from examples import generate_models
from onnx import TensorProto
from tritonclient.utils import InferenceServerException

from tests.integration.http_helpers import request
from tests.integration.server import RunningServer, running_server

RAW = {"Inference-Header-Content-Length": "0"}

# name -> (ONNX type, ONNX dims, config datatype, config dims)
IDENTITIES = {
    "fp32_vector": (TensorProto.FLOAT, ["batch", "n"], "TYPE_FP32", "[ -1 ]"),
    "fp16_matrix": (TensorProto.FLOAT16, ["batch", "h", "w"], "TYPE_FP16", "[ -1, -1 ]"),
    "string_one": (TensorProto.STRING, ["batch", 1], "TYPE_STRING", "[ 1 ]"),
    "string_vector": (TensorProto.STRING, ["batch", "n"], "TYPE_STRING", "[ -1 ]"),
}


def _identity_config(name: str, datatype: str, dims: str) -> str:
    return (
        f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
        f'input [ {{ name: "INPUT0" data_type: {datatype} dims: {dims} }} ]\n'
        f'output [ {{ name: "OUTPUT0" data_type: {datatype} dims: {dims} }} ]\n'
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("qa_protocol")
    for name, (onnx_type, onnx_dims, datatype, dims) in IDENTITIES.items():
        generate_models.identity_model(repository / name / "1" / "model.onnx", onnx_type, onnx_dims)
        (repository / name / "config.pbtxt").write_text(_identity_config(name, datatype, dims))
    generate_models.simple_model(repository / "simple" / "1" / "model.onnx")
    (repository / "simple" / "config.pbtxt").write_text(generate_models.SIMPLE_CONFIG)
    with running_server(repository) as running:
        yield running


def _raw_infer(server: RunningServer, model: str, body: bytes) -> tuple[int, bytes]:
    """(status, the binary data after the response's JSON header; the body on errors)."""
    status, headers, payload = request(
        server.http_port, "POST", f"/v2/models/{model}/infer", body, RAW
    )
    if status != 200:
        return status, payload
    return status, payload[int(headers["inference-header-content-length"]) :]


@pytest.mark.parametrize("count", [8, 32])
def test_raw_request_deduces_the_variable_dimension(server: RunningServer, count: int) -> None:
    data = np.arange(count, dtype=np.float32).tobytes()
    assert _raw_infer(server, "fp32_vector", data) == (200, data)


def test_raw_bytes_request_is_one_element(server: RunningServer) -> None:
    status, output = _raw_infer(server, "string_one", b"427")
    assert status == 200, output
    assert output == struct.pack("<I", 3) + b"427"


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        (
            "string_vector",
            b"427",
            "For BYTE datatype raw input 'INPUT0', the model must have input shape [1]",
        ),
        (
            "fp16_matrix",
            np.ones(4, dtype=np.float16).tobytes(),
            "can not be deduced because there are more than one variable-sized dimension",
        ),
        (
            "simple",
            np.arange(32, dtype=np.int32).tobytes(),
            "Raw request must only have 1 input (found 1) to be deduced but got 2 inputs",
        ),
        ("fp32_vector", b"\x00" * 6, "not a whole number of FP32 elements"),
    ],
)
def test_raw_request_that_cannot_be_deduced_is_400(
    server: RunningServer, model: str, body: bytes, message: str
) -> None:
    status, payload = _raw_infer(server, model, body)
    assert status == 400, payload
    assert message in payload.decode()


def _simple_inputs(module: Any) -> list[Any]:
    inputs = [module.InferInput(f"INPUT{i}", [1, 16], "INT32") for i in range(2)]
    for item in inputs:
        item.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
    return inputs


@pytest.mark.parametrize(
    ("module", "code"), [(httpclient, "400"), (grpcclient, "StatusCode.INVALID_ARGUMENT")]
)
def test_duplicate_requested_output_is_rejected(
    server: RunningServer, module: Any, code: str
) -> None:
    url = server.http_url if module is httpclient else server.grpc_url
    client = module.InferenceServerClient(url)
    outputs = [module.InferRequestedOutput("OUTPUT0") for _ in range(2)]
    with pytest.raises(InferenceServerException) as caught:
        client.infer("simple", _simple_inputs(module), outputs=outputs)
    assert code in str(caught.value)
    assert "output 'OUTPUT0' already exists in request" in str(caught.value)
    assert client.infer("simple", _simple_inputs(module)).as_numpy("OUTPUT0") is not None


def test_non_utf8_bytes_to_an_onnx_string_input_is_invalid_argument(
    server: RunningServer,
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    data = np.array([[b"\xfa\xfb", b"ok"]], dtype=np.object_)
    item = grpcclient.InferInput("INPUT0", [1, 2], "BYTES")
    item.set_data_from_numpy(data)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("string_vector", [item])
    assert "StatusCode.INVALID_ARGUMENT" in str(caught.value)
    assert "not UTF-8" in str(caught.value)
    item.set_data_from_numpy(np.array([["é".encode(), b"ok"]], dtype=np.object_))
    result = client.infer("string_vector", [item]).as_numpy("OUTPUT0")
    assert result is not None and result.tolist() == [["é".encode(), b"ok"]]
