"""The adapters between the backend interface and user code: batch views and answer mapping."""

from __future__ import annotations

import re

import numpy as np
import pytest

from inferd.backends.base import BatchRequest
from inferd.backends.python import Batch, InferenceError
from inferd.backends.python.answers import make_batch, to_batch_outputs
from inferd.core.batch_io import BatchIO
from inferd.core.errors import InvalidArgument, ModelExecutionError
from inferd.core.model_config import parse_pbtxt

FP32 = {"OUT": np.dtype(np.float32)}


def two_requests() -> Batch:
    inputs = {"IN": np.arange(12, dtype=np.float32).reshape(3, 4)}
    requests = [BatchRequest(0, 1, "a", {"p": 1}), BatchRequest(1, 3, "b")]
    return make_batch(inputs, ["OUT"], requests, batched=True)


def test_requests_view_their_rows_of_the_stacked_batch() -> None:
    batch = two_requests()
    first, second = batch.requests
    assert (first.start, first.end, first.id, first.parameters) == (0, 1, "a", {"p": 1})
    assert second.inputs["IN"].shape == (2, 4)
    assert np.shares_memory(second.inputs["IN"], batch.inputs["IN"])  # a view, not a copy
    np.testing.assert_array_equal(second.inputs["IN"], batch.inputs["IN"][1:3])


def test_in_a_ragged_batch_a_request_sees_its_own_inputs_and_no_batch_inputs() -> None:
    io = BatchIO.from_config(
        parse_pbtxt(
            """max_batch_size: 4
            input [{ name: "R", data_type: TYPE_FP32, dims: [ -1 ], allow_ragged_batch: true },
                   { name: "F", data_type: TYPE_FP32, dims: [ 1 ] }]
            output [{ name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] }]
            batch_input [{ kind: BATCH_ELEMENT_COUNT, target_name: "N", data_type: TYPE_INT32,
                           source_input: "R" }]"""
        )
    )
    inputs = {
        "R": np.arange(5, dtype=np.float32),
        "F": np.array([[7.0], [8.0]], np.float32),
        "N": np.array([2, 3], np.int32),
    }
    requests = [
        BatchRequest(0, 1, ragged_shapes={"R": (1, 2)}),
        BatchRequest(1, 2, ragged_shapes={"R": (1, 3)}),
    ]
    batch = make_batch(inputs, ["OUT"], requests, True, io)
    assert batch.inputs["N"].tolist() == [2, 3]  # the stacked form has it all
    first, second = (request.inputs for request in batch.requests)
    assert sorted(first) == ["F", "R"]
    assert first["R"].tolist() == [[0.0, 1.0]] and second["R"].tolist() == [[2.0, 3.0, 4.0]]
    assert second["F"].tolist() == [[8.0]]
    # A scattered output is cut by shapes, so it has no rows to check.
    outputs = to_batch_outputs({"OUT": np.zeros(5)}, batch, FP32, True, {"OUT"})
    assert isinstance(outputs, dict) and outputs["OUT"].shape == (5,)


def test_without_a_batch_axis_the_request_owns_every_input() -> None:
    inputs = {"IN": np.zeros((5, 2), dtype=np.float32)}
    batch = make_batch(inputs, ["OUT"], [BatchRequest(0, 1)], batched=False)
    assert batch.requests[0].inputs["IN"].shape == (5, 2)


def test_stacked_answer_is_converted_to_the_config_dtype() -> None:
    batch = two_requests()
    outputs = to_batch_outputs({"OUT": batch.inputs["IN"] * 2.0, "extra": 1}, batch, FP32, True)
    assert isinstance(outputs, dict)
    assert outputs["OUT"].dtype == np.float32
    assert set(outputs) == {"OUT"}  # only what was asked for
    float64 = to_batch_outputs({"OUT": np.ones((3, 4))}, batch, FP32, True)
    assert isinstance(float64, dict) and float64["OUT"].dtype == np.float32


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ({}, "did not return output 'OUT'"),
        ({"OUT": np.ones((2, 4), np.float32)}, "output 'OUT' has shape [2, 4], expected 3 rows"),
        ({"OUT": np.array([["x"] * 4] * 3)}, "output 'OUT' has dtype <U1"),
        (42, "must return a dict of outputs or a list"),
        ([{}], "returned 1 answers for 2 requests"),
    ],
)
def test_stacked_answer_that_does_not_fit_is_a_model_error(returned: object, message: str) -> None:
    with pytest.raises(ModelExecutionError, match=re.escape(message)):
        to_batch_outputs(returned, two_requests(), FP32, True)


def test_list_answer_fails_only_the_bad_requests() -> None:
    batch = two_requests()
    outputs = to_batch_outputs(
        [InferenceError("bad input"), {"OUT": np.ones((2, 4), np.float32)}], batch, FP32, True
    )
    assert isinstance(outputs, list)
    assert isinstance(outputs[0], InvalidArgument) and outputs[0].message == "bad input"
    assert isinstance(outputs[1], dict) and outputs[1]["OUT"].shape == (2, 4)
    mixed = to_batch_outputs([RuntimeError("boom"), {"OUT": np.ones(4)}], batch, FP32, True)
    assert isinstance(mixed[0], ModelExecutionError) and "RuntimeError: boom" in mixed[0].message
    assert isinstance(mixed[1], ModelExecutionError) and "expected 2 rows" in mixed[1].message


def test_bytes_outputs_accept_str_and_bytes_arrays() -> None:
    batch = make_batch(
        {"IN": np.array([[b"a"]], dtype=object)}, ["OUT"], [BatchRequest(0, 1)], True
    )
    outputs = to_batch_outputs({"OUT": np.array([["x"]])}, batch, {"OUT": np.dtype(object)}, True)
    assert isinstance(outputs, dict) and outputs["OUT"].dtype.kind == "U"
