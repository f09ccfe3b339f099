from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from inferd.core.datatypes import serialize_bytes
from inferd.core.errors import InvalidArgument
from inferd.core.types import InferResponse
from inferd.frontends.grpc.codec import (
    decode_infer_request,
    decode_parameters,
    encode_infer_response,
    encode_parameters,
)
from inferd.frontends.grpc.wire import serialize_infer_response


def _typed(datatype: str, field: str, values: list[Any], shape: list[int]) -> Any:
    message = service_pb2.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="x", datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return message


@pytest.mark.parametrize(
    ("datatype", "field", "values", "dtype"),
    [
        ("BOOL", "bool_contents", [True, False], np.bool_),
        ("INT8", "int_contents", [-128, 127], np.int8),
        ("UINT16", "uint_contents", [0, 65535], np.uint16),
        ("INT64", "int64_contents", [-(2**62), 2**62], np.int64),
        ("UINT64", "uint64_contents", [0, 2**64 - 1], np.uint64),
        ("FP64", "fp64_contents", [0.25, -1.5], np.float64),
    ],
)
def test_typed_contents_become_the_datatype(
    datatype: str, field: str, values: list[Any], dtype: type
) -> None:
    request = decode_infer_request(_typed(datatype, field, values, [1, 2]))
    array = request.inputs["x"]
    assert array.dtype == dtype
    np.testing.assert_array_equal(array, np.array([values], dtype=dtype))


def test_typed_bytes_contents() -> None:
    request = decode_infer_request(_typed("BYTES", "bytes_contents", [b"a", b"", b"xyz"], [3]))
    assert request.inputs["x"].tolist() == [b"a", b"", b"xyz"]


def test_narrow_int_out_of_range_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="outside the INT8 range"):
        decode_infer_request(_typed("INT8", "int_contents", [0, 300], [2]))


def test_fp16_has_no_typed_contents() -> None:
    with pytest.raises(InvalidArgument, match="raw_input_contents"):
        decode_infer_request(_typed("FP16", "fp32_contents", [1.0], [1]))


def test_raw_contents_are_a_view_not_a_copy() -> None:
    message = service_pb2.ModelInferRequest(model_name="m", id="7")
    message.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    message.raw_input_contents.append(np.arange(4, dtype=np.float32).tobytes())
    request = decode_infer_request(message)
    array = request.inputs["x"]
    assert request.id == "7"
    assert not array.flags.owndata
    np.testing.assert_array_equal(array, [[0, 1], [2, 3]])


def test_raw_bytes_tensor_is_length_prefixed() -> None:
    message = service_pb2.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="BYTES", shape=[2])
    message.raw_input_contents.append(serialize_bytes(np.array([b"ab", b"c"], dtype=np.object_)))
    assert decode_infer_request(message).inputs["x"].tolist() == [b"ab", b"c"]


def test_parameters_round_trip() -> None:
    values = {"b": True, "i": -5, "u": 2**64 - 1, "f": 0.5, "s": "text", "n": np.int32(4)}
    message = service_pb2.ModelInferResponse()
    encode_parameters(values, message.parameters)
    assert message.parameters["u"].WhichOneof("parameter_choice") == "uint64_param"
    assert message.parameters["n"].WhichOneof("parameter_choice") == "int64_param"
    assert decode_parameters(message.parameters) == values


def test_response_outputs_are_raw_and_in_order() -> None:
    outputs = {
        "y": np.arange(6, dtype=np.int16).reshape(2, 3)[:, ::2],  # not contiguous
        "s": np.array([b"hello", b"!"], dtype=np.object_),
    }
    encoded = encode_infer_response(
        InferResponse("m", "3", outputs, id="r", parameters={"k": 1}),
        service_pb2.ModelInferResponse(),
    )
    message = service_pb2.ModelInferResponse.FromString(serialize_infer_response(encoded))
    assert (message.model_name, message.model_version, message.id) == ("m", "3", "r")
    assert [(o.name, o.datatype, list(o.shape)) for o in message.outputs] == [
        ("y", "INT16", [2, 2]),
        ("s", "BYTES", [2]),
    ]
    y = np.frombuffer(message.raw_output_contents[0], dtype=np.int16).reshape(2, 2)
    np.testing.assert_array_equal(y, [[0, 2], [3, 5]])
    assert message.raw_output_contents[1] == serialize_bytes(outputs["s"])
    assert message.parameters["k"].int64_param == 1


@pytest.mark.parametrize(
    ("shape", "datatype", "message"),
    [
        ([1] * 100, "INT32", "at most 32"),
        ([10**12], "BYTES", "cannot hold"),
        ([2**62, 4], "INT32", "needs"),
        ([-1, 4], "INT32", "negative"),
    ],
)
def test_hostile_shapes_are_invalid_argument(shape: list[int], datatype: str, message: str) -> None:
    request = service_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype=datatype, shape=shape)
    request.raw_input_contents.append(b"\x00" * 4)
    with pytest.raises(InvalidArgument, match=message):
        decode_infer_request(request)


@pytest.mark.parametrize("datatype", ["INT32", "BYTES", "FP64"])
@pytest.mark.parametrize("raw", [True, False])
def test_an_empty_shape_too_large_to_index_is_invalid_argument(datatype: str, raw: bool) -> None:
    # No element (a 0), but numpy cannot index the other dimensions.
    request = service_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype=datatype, shape=[0, 2**40, 2**30])
    if raw:
        request.raw_input_contents.append(b"")
    with pytest.raises(InvalidArgument, match="larger than any tensor can be"):
        decode_infer_request(request)
