from __future__ import annotations

import json
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from inferd.core.datatypes import numpy_dtype
from inferd.core.errors import InvalidArgument
from inferd.core.types import InferResponse
from inferd.engine.request_checks import ModelTensor
from inferd.frontends.http.generate import decode_generate_request, encode_generate_response


def spec(name: str, datatype: str, *dims: int) -> ModelTensor:
    return ModelTensor(name, datatype, numpy_dtype(datatype), dims, None, False)


def decode(document: Any, *specs: ModelTensor, max_batch_size: int = 0) -> Any:
    body = json.dumps(document).encode()
    return decode_generate_request(body, specs, max_batch_size, "m", "")


@pytest.mark.parametrize(
    ("dims", "value", "shape"),
    [
        ((4,), [1, 2, 3, 4], [4]),
        ((1,), 7, [1]),
        ((), 7, []),
        ((-1,), [1, 2, 3], [3]),
        ((-1,), 5, [1]),
        ((2, -1), [1, 2, 3, 4, 5, 6], [2, 3]),
        ((-1, -1), [1, 2, 3], [1, 3]),
        ((-1, 2), [1, 2, 3, 4], [2, 2]),
        ((2, -1), [[1, 2], [3, 4]], [2, 2]),
        ((-1,), [], [0]),
    ],
)
def test_a_value_fills_the_configured_shape(
    dims: tuple[int, ...], value: Any, shape: list[int]
) -> None:
    request = decode({"x": value}, spec("x", "FP32", *dims))
    assert list(request.inputs["x"].shape) == shape
    assert request.inputs["x"].dtype == np.float32


def test_a_batching_model_gets_a_batch_of_one() -> None:
    x = spec("x", "INT64", 2, -1)
    assert decode({"x": [1, 2, 3, 4]}, x, max_batch_size=8).inputs["x"].shape == (1, 2, 2)
    assert decode({"x": [[[1], [2]]]}, x, max_batch_size=8).inputs["x"].shape == (1, 2, 1)


@pytest.mark.parametrize(
    ("dims", "value", "message"),
    [
        ((4,), [1, 2, 3], "3 values cannot fill it"),
        ((4,), list(range(100)), "100 values cannot fill it"),
        ((2, -1), [1, 2, 3], "3 values cannot fill it"),
        ((2, -1), [[1, 2], [3, 4], [5, 6]], "a nested list of shape [3, 2]"),
        ((4,), [[1, 2], [3, 4]], "a nested list of shape [2, 2]"),
        ((4,), [[1, 2], [3]], "does not hold FP32 values"),
        ((4,), "abcd", "does not hold FP32 values"),
        ((4,), None, "not null"),
        ((4,), {"a": 1}, "not an object"),
    ],
)
def test_a_value_that_does_not_fit_is_refused_naming_the_input(
    dims: tuple[int, ...], value: Any, message: str
) -> None:
    with pytest.raises(InvalidArgument, match="input 'x'") as error:
        decode({"x": value}, spec("x", "FP32", *dims))
    assert message in error.value.message


def test_strings_fill_bytes_inputs() -> None:
    text = spec("text", "BYTES", 1)
    request = decode({"text": "héllo"}, text, max_batch_size=4)
    assert request.inputs["text"].tolist() == [["héllo".encode()]]
    with pytest.raises(InvalidArgument, match="does not hold BYTES values"):
        decode({"text": 5}, text)


def test_other_keys_are_parameters_and_parameters_may_hold_inputs() -> None:
    a, b = spec("a", "INT32", 1), spec("b", "BOOL", 1)
    request = decode({"a": 1, "id": "r", "top_k": 3, "parameters": {"b": True, "t": "x"}}, a, b)
    assert set(request.inputs) == {"a", "b"} and request.inputs["b"].dtype == np.bool_
    assert request.parameters == {"top_k": 3, "t": "x"} and request.id == "r"
    with pytest.raises(InvalidArgument, match="both at the top level and in 'parameters'"):
        decode({"a": 1, "parameters": {"a": 2}}, a)
    with pytest.raises(InvalidArgument, match="'c' is not an input of model 'm'"):
        decode({"c": [1, 2]}, a)


def test_one_element_outputs_are_scalars_and_others_flat_lists() -> None:
    outputs = {
        "text": np.array([[b"caf\xc3\xa9"]], dtype=np.object_),
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
        "half": np.array([0.5], dtype=np.float16),
        "brain": np.array([1.5, 2.5], dtype=ml_dtypes.bfloat16),
        "flag": np.array([[True]]),
        "token": np.array([[7]], dtype=np.uint64),
        "single": np.array([0.1], dtype=np.float32),
    }
    response = InferResponse("m", "1", outputs, "r", {"tokens": 2})
    assert json.loads(encode_generate_response(response)) == {
        "text": "café",
        "ids": [0, 1, 2, 3, 4, 5],
        "half": 0.5,
        "brain": [1.5, 2.5],
        "flag": True,
        "token": 7,
        "single": 0.1,
        "tokens": 2,
        "model_name": "m",
        "model_version": "1",
        "id": "r",
    }
