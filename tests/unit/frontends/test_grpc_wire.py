"""The appended raw output contents give the very bytes protobuf would, checked against
messages built the standard way (`raw_output_contents` filled through protobuf)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from inferd.core.datatypes import numpy_dtype, serialize_bytes, v2_datatype
from inferd.core.types import Array, InferResponse
from inferd.frontends.grpc.codec import encode_infer_response
from inferd.frontends.grpc.wire import serialize_infer_response, serialize_stream_response


def _standard(response: InferResponse) -> Any:
    """The message as protobuf builds it, from bytes made independently of the codec."""
    message = service_pb2.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    for key, value in response.parameters.items():
        message.parameters[key].int64_param = value
    for name, array in response.outputs.items():
        datatype = v2_datatype(array.dtype)
        data = serialize_bytes(array) if datatype == "BYTES" else array.tobytes()
        message.outputs.add(name=name, datatype=datatype, shape=array.shape)
        message.raw_output_contents.append(data)
    return message


def _encoded(response: InferResponse) -> Any:
    return encode_infer_response(response, service_pb2.ModelInferResponse())


_CASES: dict[str, dict[str, Array]] = {
    "fp32 16x1000": {"y": np.arange(16_000, dtype=np.float32).reshape(16, 1000)},
    "bytes": {"s": np.array([b"hello", b"", "é".encode(), b"\x00\xff"], dtype=np.object_)},
    "empty": {"e": np.zeros((0, 4), np.float32), "b": np.array([], dtype=np.object_)},
    "not contiguous": {"t": np.arange(24, dtype=np.int16).reshape(4, 6)[:, ::2].T},
    "many outputs": {f"o{i}": np.full(i, i, np.uint8) for i in range(60)},
    # 127/128 and 16383/16384 bytes: the length varint's 1-2 and 2-3 byte boundaries.
    "varint boundaries": {
        "a": np.zeros(127, np.uint8),
        "b": np.zeros(128, np.uint8),
        "c": np.zeros(16_383, np.uint8),
        "d": np.zeros(16_384, np.uint8),
        "big": np.zeros(300_000, np.float64),
    },
    "no outputs": {},
    "bool and a 0-d tensor": {"f": np.array([True, False]), "z": np.array(2.5)},
    "16-bit floats": {
        "bf16": np.arange(6).astype(numpy_dtype("BF16")).reshape(2, 3),
        "fp16": np.arange(6, dtype=np.float16)[::2],
    },
}


@pytest.mark.parametrize("outputs", list(_CASES.values()), ids=list(_CASES))
def test_bytes_are_protobufs_own(outputs: dict[str, Array]) -> None:
    response = InferResponse("model", "2", outputs, id="req-7", parameters={"sequence_id": 3})
    standard = _standard(response)
    wire = serialize_infer_response(_encoded(response))
    assert wire == standard.SerializeToString()
    assert service_pb2.ModelInferResponse.FromString(wire) == standard


def test_stream_answer_is_the_response_in_a_stream_message() -> None:
    response = InferResponse("model", "1", _CASES["bytes"] | _CASES["fp32 16x1000"], id="s")
    standard = service_pb2.ModelStreamInferResponse(infer_response=_standard(response))
    wire = serialize_stream_response(_encoded(response))
    assert wire == standard.SerializeToString()
    assert service_pb2.ModelStreamInferResponse.FromString(wire) == standard


def test_stream_error_answer_goes_through_protobuf() -> None:
    echo = service_pb2.ModelInferResponse(model_name="m", id="bad")
    error = service_pb2.ModelStreamInferResponse(error_message="no", infer_response=echo)
    assert serialize_stream_response(error) == error.SerializeToString()


def test_outputs_are_read_where_they_are() -> None:
    contiguous = np.arange(8, dtype=np.float32)
    (raw,) = _encoded(InferResponse("m", "1", {"y": contiguous})).raw_outputs
    assert np.shares_memory(raw, contiguous)


def test_many_parameters_in_protobufs_own_order() -> None:
    """Protobuf orders a map's entries per message object, so the reference here is the same
    header with its raw contents added through protobuf."""
    parameters = {f"key{i}": i for i in range(20)}
    outputs = {"y": np.ones(3, np.float32)}
    encoded = _encoded(InferResponse("m", "1", outputs, parameters=parameters))
    wire = serialize_infer_response(encoded)
    encoded.header.raw_output_contents.extend(bytes(raw) for raw in encoded.raw_outputs)
    assert wire == encoded.header.SerializeToString()
