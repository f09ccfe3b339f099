from __future__ import annotations

import re

import numpy as np
import pytest

from inferd.core.errors import InvalidArgument
from inferd.core.model_config import parse_pbtxt
from inferd.core.types import InferRequest, RequestedOutput
from inferd.engine.request_checks import ModelTensor, apply_reshape, check_request

CONFIG = parse_pbtxt(
    """
    max_batch_size: 4
    input [
      { name: "a", data_type: TYPE_FP32, dims: [ 3, -1 ] },
      { name: "b", data_type: TYPE_INT64, dims: [ 2 ], optional: true },
      { name: "c", data_type: TYPE_FP32, dims: [ 4 ], reshape: { shape: [ 2, 2 ] } }
    ]
    output [ { name: "y", data_type: TYPE_STRING, dims: [ 1 ] } ]
    """
)
INPUTS = {t.name: ModelTensor.from_config(t) for t in CONFIG.input}
OUTPUTS = {t.name: ModelTensor.from_config(t) for t in CONFIG.output}


def _request(**arrays: np.ndarray) -> InferRequest:
    return InferRequest("m", dict(arrays))


def _check(request: InferRequest, max_batch_size: int = 4) -> None:
    check_request(request, INPUTS, OUTPUTS, max_batch_size)


def test_specs_from_config() -> None:
    assert INPUTS["a"].dtype == np.float32 and INPUTS["a"].dims == (3, -1)
    assert INPUTS["b"].optional
    assert INPUTS["c"].reshape == (2, 2)
    assert OUTPUTS["y"].datatype == "BYTES"
    assert INPUTS["a"].wire_shape(4) == [-1, 3, -1]
    assert INPUTS["a"].wire_shape(0) == [3, -1]


def test_valid_request_with_wildcard_dims_and_optional_input_left_out() -> None:
    _check(_request(a=np.zeros((2, 3, 7), np.float32), c=np.zeros((2, 4), np.float32)))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"a": np.zeros((1, 3, 1), np.float64), "c": np.zeros((1, 4), np.float32)}, "FP64"),
        ({"a": np.zeros((1, 2, 1), np.float32), "c": np.zeros((1, 4), np.float32)}, "shape"),
        ({"a": np.zeros((5, 3, 1), np.float32), "c": np.zeros((5, 4), np.float32)}, "batch size 5"),
        ({"a": np.zeros((0, 3, 1), np.float32), "c": np.zeros((0, 4), np.float32)}, "batch size 0"),
        ({"a": np.zeros((1, 3, 1), np.float32), "c": np.zeros((2, 4), np.float32)}, "different"),
        ({"a": np.zeros((1, 3, 1), np.float32)}, "missing required input(s) ['c']"),
        ({"z": np.zeros((1,), np.float32)}, "unexpected inference input 'z'"),
    ],
)
def test_invalid_requests(arrays: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        _check(_request(**arrays))


def test_unknown_requested_output() -> None:
    request = _request(a=np.zeros((1, 3, 1), np.float32), c=np.zeros((1, 4), np.float32))
    request.outputs = [RequestedOutput("nope")]
    with pytest.raises(InvalidArgument, match="unexpected inference output 'nope'"):
        _check(request)


def test_non_batching_model_checks_the_full_shape() -> None:
    with pytest.raises(InvalidArgument, match="expects"):
        _check(_request(a=np.zeros((1, 3, 1), np.float32), c=np.zeros((4,), np.float32)), 0)
    _check(_request(a=np.zeros((3, 1), np.float32), c=np.zeros((4,), np.float32)), 0)


def test_reshape_keeps_the_batch_axis() -> None:
    spec = INPUTS["c"]
    assert apply_reshape(np.zeros((3, 4)), spec, spec.reshape, True).shape == (3, 2, 2)
    assert apply_reshape(np.zeros((4,)), spec, spec.reshape, False).shape == (2, 2)
    with pytest.raises(InvalidArgument, match="cannot be reshaped"):
        apply_reshape(np.zeros((3, 5)), spec, spec.reshape, True)


def test_missing_inputs_are_reported_in_triton_words() -> None:
    with pytest.raises(InvalidArgument) as info:
        _check(_request(c=np.zeros((1, 4), np.float32)))
    assert info.value.message == (
        "expected number of inputs between 2 and 3 but got 1 inputs for model 'm'. "
        "Got input(s) ['c'], but missing required input(s) ['a']. "
        "Please provide all required input(s)."
    )
    required = {name: spec for name, spec in INPUTS.items() if not spec.optional}
    with pytest.raises(InvalidArgument) as info:
        check_request(_request(), required, OUTPUTS, 4)
    assert info.value.message == (
        "expected 2 inputs but got 0 inputs for model 'm'. Got input(s) [], but missing "
        "required input(s) ['a','c']. Please provide all required input(s)."
    )


def test_a_classification_of_a_string_output_is_refused_before_it_runs() -> None:
    request = _request(a=np.zeros((1, 3, 1), np.float32), c=np.zeros((1, 4), np.float32))
    request.outputs = [RequestedOutput("y", {"classification": 3})]
    with pytest.raises(InvalidArgument, match="unsupported type 'BYTES'"):
        _check(request)
