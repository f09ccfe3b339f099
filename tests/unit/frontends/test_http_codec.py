from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from inferd.core.errors import InvalidArgument
from inferd.core.types import InferResponse, RequestedOutput
from inferd.frontends.http.codec import decode_infer_request, encode_infer_response


def _decode(document: dict[str, object], binary: bytes = b"") -> dict[str, np.ndarray]:
    header = json.dumps(document).encode()
    length = len(header) if binary else None
    return decode_infer_request(header + binary, length, "m", "").inputs


def test_binary_inputs_are_views_of_the_body() -> None:
    data = np.arange(6, dtype=np.float32)
    document = {
        "inputs": [
            {
                "name": "x",
                "shape": [2, 3],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 24},
            }
        ]
    }
    (array,) = _decode(document, data.tobytes()).values()
    assert array.shape == (2, 3) and not array.flags.owndata
    np.testing.assert_array_equal(array.reshape(-1), data)


def test_bf16_binary_round_trip() -> None:
    values = np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16)
    document = {
        "inputs": [
            {"name": "x", "shape": [2], "datatype": "BF16", "parameters": {"binary_data_size": 4}}
        ]
    }
    (array,) = _decode(document, values.tobytes()).values()
    assert array.dtype == ml_dtypes.bfloat16
    request = decode_infer_request(
        json.dumps(
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}
        ).encode(),
        None,
        "m",
        "",
    )
    body, length = encode_infer_response(InferResponse("m", "1", {"y": array}), request)
    assert length is None
    assert json.loads(body)["outputs"][0] == {
        "name": "y",
        "datatype": "BF16",
        "shape": [2],
        "data": [1.5, -2.0],
    }


def test_nested_json_data_and_bools() -> None:
    inputs = _decode(
        {
            "inputs": [
                {"name": "a", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]},
                {"name": "b", "shape": [2], "datatype": "BOOL", "data": [True, False]},
                {"name": "c", "shape": [1], "datatype": "BYTES", "data": ["h\u00e9"]},
                {"name": "d", "shape": [0], "datatype": "FP16", "data": []},
            ]
        }
    )
    assert inputs["a"].dtype == np.int64 and inputs["a"].tolist() == [[1, 2], [3, 4]]
    assert inputs["b"].dtype == np.bool_
    assert inputs["c"][0] == "h\u00e9".encode()
    assert inputs["d"].shape == (0,)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"datatype": "INT32", "data": [1.5]}, "INT32"),
        ({"datatype": "BOOL", "data": [1]}, "BOOL"),
        ({"datatype": "UINT8", "data": [300]}, "range"),
        ({"datatype": "UINT8", "data": [-1]}, "range"),
        ({"datatype": "BYTES", "data": [1]}, "strings"),
        ({"datatype": "FP32", "data": [[1], [2, 3]]}, "FP32"),
        ({"datatype": "FP32", "data": [None]}, "FP32"),
        ({"datatype": "FP32", "data": [1], "parameters": []}, "parameters"),
    ],
)
def test_json_data_errors(item: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _decode({"inputs": [{"name": "x", "shape": [1], **item}]})


def test_response_binary_and_json_outputs() -> None:
    request = decode_infer_request(
        json.dumps(
            {
                "id": "7",
                "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
                "outputs": [{"name": "a", "parameters": {"binary_data": True}}, {"name": "b"}],
            }
        ).encode(),
        None,
        "m",
        "",
    )
    assert request.outputs == [
        RequestedOutput("a", {"binary_data": True}),
        RequestedOutput("b", {}),
    ]
    a = np.arange(4, dtype=np.int16).reshape(2, 2)
    b = np.array([b"x", b"yz"], dtype=np.object_)
    body, length = encode_infer_response(InferResponse("m", "1", {"a": a, "b": b}, "7"), request)
    assert length is not None
    header = json.loads(body[:length])
    assert header["id"] == "7"
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert header["outputs"][1]["data"] == ["x", "yz"]
    np.testing.assert_array_equal(np.frombuffer(body[length:], dtype=np.int16), a.reshape(-1))


def test_bytes_count_beyond_the_data_is_refused_before_allocating() -> None:
    document = {
        "inputs": [
            {
                "name": "x",
                "shape": [10**12],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": 4},
            }
        ]
    }
    with pytest.raises(InvalidArgument, match="cannot hold"):
        _decode(document, b"\x00" * 4)


def test_an_empty_outputs_list_asks_for_every_output() -> None:
    document = {
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
        "outputs": [],
    }
    assert decode_infer_request(json.dumps(document).encode(), None, "m", "").outputs is None
