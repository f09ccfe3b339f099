"""A config's ragged inputs, batch inputs and batch outputs, read and checked at load."""

from __future__ import annotations

import pytest

from inferd.core.batch_io import BatchInputSpec, BatchIO, ScatterSpec
from inferd.core.errors import InvalidArgument, Unsupported
from inferd.core.model_config import parse_pbtxt

BASE = """
name: "r"
max_batch_size: 4
input [
  { name: "IN", data_type: TYPE_FP32, dims: [ -1 ], allow_ragged_batch: true },
  { name: "OPT", data_type: TYPE_FP32, dims: [ 2 ], optional: true }
]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""


def _io(extra: str = "", base: str = BASE) -> BatchIO | None:
    return BatchIO.from_config(parse_pbtxt(base + extra))


def test_a_config_without_ragged_batching_has_none() -> None:
    assert _io(base=BASE.replace(", allow_ragged_batch: true", "")) is None


def test_entries_are_read() -> None:
    io = _io(
        'batch_input [{ kind: BATCH_ITEM_SHAPE, target_name: ["A", "B"], data_type: TYPE_INT32,'
        ' source_input: "IN" }]\n'
        'batch_output [{ target_name: "OUT", kind: BATCH_SCATTER_WITH_INPUT_SHAPE,'
        ' source_input: "IN" }]'
    )
    assert io == BatchIO(
        frozenset({"IN"}),
        (BatchInputSpec("BATCH_ITEM_SHAPE", ("A", "B"), "int32", "IN"),),
        {"OUT": ScatterSpec("IN", (-1, -1))},
    )
    assert io.fed == ("A", "B")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            'batch_input [{ kind: BATCH_ELEMENT_COUNT, target_name: "N", data_type: TYPE_INT64,'
            ' source_input: "IN" }]',
            "must be TYPE_INT32 or TYPE_FP32",
        ),
        (
            'batch_input [{ kind: BATCH_ELEMENT_COUNT, target_name: "N", data_type: TYPE_INT32,'
            ' source_input: ["IN", "OPT"] }]',
            "expects 1 source input, got 2",
        ),
        (
            'batch_input [{ kind: BATCH_ELEMENT_COUNT, target_name: "N", data_type: TYPE_INT32,'
            ' source_input: "NOPE" }]',
            "unknown source input name 'NOPE'",
        ),
        (
            'batch_input [{ kind: BATCH_ELEMENT_COUNT, target_name: "N", data_type: TYPE_INT32,'
            ' source_input: "OPT" }]',
            "cannot be optional",
        ),
        (
            'batch_input [{ kind: BATCH_ELEMENT_COUNT, target_name: "IN", data_type: TYPE_INT32,'
            ' source_input: "IN" }]',
            r"target names \['IN'\] must be unique",
        ),
        (
            'batch_input [{ kind: BATCH_ELEMENT_COUNT, data_type: TYPE_INT32, source_input: "IN"'
            " }]",
            "names no target_name",
        ),
        (
            'batch_output [{ target_name: "NOPE", source_input: "IN" }]',
            "unknown target output name 'NOPE'",
        ),
        (
            'batch_output [{ target_name: ["OUT", "OUT"], source_input: "IN" }]',
            "can only be specified once",
        ),
    ],
)
def test_entries_triton_refuses_are_refused(extra: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _io(extra)


def test_a_scattered_output_needs_its_sizes_from_the_source() -> None:
    base = BASE.replace("dims: [ -1 ] } ]", "dims: [ -1, -1 ] } ]")
    with pytest.raises(InvalidArgument, match="past the 2 dimensions"):
        _io('batch_output [{ target_name: "OUT", source_input: "IN" }]', base)


def test_batch_entries_without_a_batch_axis_are_refused() -> None:
    base = BASE.replace("max_batch_size: 4", "max_batch_size: 0")
    assert _io(base=base) is None  # allow_ragged_batch alone: nothing is ever batched
    with pytest.raises(Unsupported, match="max_batch_size 0"):
        _io('batch_output [{ target_name: "OUT", source_input: "IN" }]', base)


def test_ragged_sequence_models_are_refused() -> None:
    with pytest.raises(Unsupported, match="not with sequence_batching"):
        _io("sequence_batching { }")
