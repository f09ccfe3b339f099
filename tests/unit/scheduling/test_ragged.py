"""Ragged batches: each batch_input kind and the batch_output scatter against the values
Triton's documentation and QA give, and a dynamic batcher that batches ragged requests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.batch_io import BatchIO, ScatterSpec
from inferd.core.errors import Internal
from inferd.core.model_config import parse_pbtxt
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import ModelInstance
from inferd.scheduling.batch import Batch, Pending
from inferd.scheduling.dynamic import DynamicBatcher
from inferd.scheduling.dynamic_settings import BatchingSettings
from inferd.scheduling.ragged import batch_input_tensor, ragged_inputs, ragged_split, scatter

# The request shapes of Triton's qa/L0_batch_input: one row each, of 2, 4, 1 and 3 elements.
QA_SHAPES = [(1, 2), (1, 4), (1, 1), (1, 3)]
# The proto's example: a batch-2 request of items [3, 1] and a batch-1 request of item [2, 2].
PROTO_SHAPES = [(2, 3, 1), (1, 2, 2)]

CONFIG = """
name: "r"
max_batch_size: 8
input [
  { name: "RAGGED", data_type: TYPE_FP32, dims: [ -1 ], allow_ragged_batch: true },
  { name: "FIXED", data_type: TYPE_FP32, dims: [ -1 ] }
]
output [
  { name: "SUMS", data_type: TYPE_FP32, dims: [ 1 ] },
  { name: "ECHO", data_type: TYPE_FP32, dims: [ -1 ] }
]
batch_input [
  { kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO, target_name: "OFFSETS",
    data_type: TYPE_INT32, source_input: "RAGGED" },
  { kind: BATCH_ELEMENT_COUNT, target_name: ["COUNTS", "COUNTS_AGAIN"],
    data_type: TYPE_FP32, source_input: "RAGGED" }
]
batch_output [
  { target_name: "ECHO", kind: BATCH_SCATTER_WITH_INPUT_SHAPE, source_input: "RAGGED" }
]
"""


@pytest.mark.parametrize(
    ("kind", "shapes", "expected"),
    [
        ("BATCH_ELEMENT_COUNT", QA_SHAPES, [2, 4, 1, 3]),
        ("BATCH_ACCUMULATED_ELEMENT_COUNT", QA_SHAPES, [2, 6, 7, 10]),
        # ragged_batching.md: requests [1, 3], [1, 4], [1, 5] give [3, 7, 12].
        ("BATCH_ACCUMULATED_ELEMENT_COUNT", [(1, 3), (1, 4), (1, 5)], [3, 7, 12]),
        # The proto: two requests of 2 elements each give 2 and 4.
        ("BATCH_ACCUMULATED_ELEMENT_COUNT", [(1, 2), (1, 2)], [2, 4]),
        ("BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO", QA_SHAPES, [0, 2, 6, 7, 10]),
        # Counts include the batch axis: a batch-2 request of [3, 1] items has 6 elements.
        ("BATCH_ELEMENT_COUNT", PROTO_SHAPES, [6, 4]),
        ("BATCH_ITEM_SHAPE", PROTO_SHAPES, [[3, 1], [3, 1], [2, 2]]),
        ("BATCH_ITEM_SHAPE_FLATTEN", PROTO_SHAPES, [3, 1, 3, 1, 2, 2]),
        (
            "BATCH_ITEM_SHAPE_FLATTEN",
            [(1, 4, 1), (1, 1, 2), (1, 1, 2), (1, 2, 2)],
            [4, 1, 1, 2, 1, 2, 2, 2],
        ),
        ("BATCH_ITEM_SHAPE", [(2, 1, 2), (1, 1, 2), (1, 2, 2)], [[1, 2], [1, 2], [1, 2], [2, 2]]),
    ],
)
@pytest.mark.parametrize("dtype", ["int32", "float32"])
def test_batch_input_kinds_match_tritons_values(
    kind: str, shapes: list[tuple[int, ...]], expected: list[int], dtype: str
) -> None:
    tensor = batch_input_tensor(kind, shapes, dtype)
    assert tensor.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(tensor, np.array(expected, dtype=dtype))


def test_max_element_count_is_told_by_the_shape_alone() -> None:
    tensor = batch_input_tensor("BATCH_MAX_ELEMENT_COUNT_AS_SHAPE", QA_SHAPES, "float32")
    assert tensor.shape == (4,)
    assert tensor.dtype == np.float32


def test_an_item_shape_of_a_rank_one_input_has_no_columns() -> None:
    assert batch_input_tensor("BATCH_ITEM_SHAPE", [(2,), (1,)], "int32").shape == (3, 0)


def test_scatter_gives_each_request_the_shape_of_its_input() -> None:
    # Triton's ragged_io: an identity model returns the flattened batch of 2 + 4 + 1 + 3.
    output = np.arange(10, dtype=np.float32)
    parts = scatter("OUT", output, ScatterSpec("IN", (-1, -1)), QA_SHAPES)
    assert [p.tolist() for p in parts] == [[[0, 1]], [[2, 3, 4, 5]], [[6]], [[7, 8, 9]]]


def test_scatter_keeps_fixed_dimensions_of_the_output() -> None:
    # Output dims [-1, 2]: each element of the source becomes a pair.
    output = np.arange(12).reshape(6, 2)
    parts = scatter("OUT", output, ScatterSpec("IN", (-1, -1, 2)), [(1, 2), (1, 4)])
    assert [p.shape for p in parts] == [(1, 2, 2), (1, 4, 2)]
    assert parts[1].tolist() == [[[4, 5], [6, 7], [8, 9], [10, 11]]]


def test_scatter_of_too_small_an_output_is_an_internal_error() -> None:
    with pytest.raises(Internal, match="fewer than the shapes"):
        scatter("OUT", np.zeros(5), ScatterSpec("IN", (-1, -1)), QA_SHAPES)


def _batch(*arrays: Array, fixed: int = 2) -> Batch[Pending]:
    loop = asyncio.new_event_loop()
    try:
        rows: list[Pending | None] = [
            Pending(
                InferRequest("r", {"RAGGED": a, "FIXED": np.ones((1, fixed), np.float32)}),
                loop.create_future(),
                0,
                1,
            )
            for a in arrays
        ]
    finally:
        loop.close()
    return Batch(rows)


def test_ragged_inputs_are_flattened_and_the_batch_inputs_added() -> None:
    io = BatchIO.from_config(parse_pbtxt(CONFIG))
    assert io is not None
    first, second = np.array([[1.0, 2.0]], np.float32), np.array([[3.0, 4.0, 5.0]], np.float32)
    batch = _batch(first, second)
    inputs = ragged_inputs(io, batch)
    np.testing.assert_array_equal(inputs["RAGGED"], [1, 2, 3, 4, 5])
    assert inputs["FIXED"].shape == (2, 2)
    np.testing.assert_array_equal(inputs["OFFSETS"], np.array([0, 2, 5], np.int32))
    np.testing.assert_array_equal(inputs["COUNTS"], np.array([2, 3], np.float32))
    assert inputs["COUNTS_AGAIN"] is inputs["COUNTS"]
    assert [r.ragged_shapes for r in batch.requests] == [{"RAGGED": (1, 2)}, {"RAGGED": (1, 3)}]


def test_a_request_alone_is_flattened_too() -> None:
    io = BatchIO.from_config(parse_pbtxt(CONFIG))
    assert io is not None
    inputs = ragged_inputs(io, _batch(np.ones((1, 3), np.float32)))
    assert inputs["RAGGED"].shape == (3,)
    np.testing.assert_array_equal(inputs["OFFSETS"], [0, 3])


def test_split_scatters_batch_outputs_and_cuts_the_others_by_rows() -> None:
    io = BatchIO.from_config(parse_pbtxt(CONFIG))
    assert io is not None
    batch = _batch(np.ones((1, 2), np.float32), np.ones((1, 3), np.float32))
    outputs = {"SUMS": np.array([[2.0], [3.0]]), "ECHO": np.arange(5.0)}
    first, second = ragged_split(io, batch, outputs)
    assert first["SUMS"].tolist() == [[2.0]] and second["SUMS"].tolist() == [[3.0]]
    assert first["ECHO"].tolist() == [[0.0, 1.0]]
    assert second["ECHO"].tolist() == [[2.0, 3.0, 4.0]]


class _Summer:
    """Sums each request's ragged elements by OFFSETS, as a ragged model does; records the
    batches it ran."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.batches: list[list[tuple[int, ...]]] = []

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest] = (),
    ) -> dict[str, Array]:
        self.gate.wait(10)
        self.batches.append([tuple((r.ragged_shapes or {})["RAGGED"]) for r in requests])
        offsets = inputs["OFFSETS"]
        sums = np.add.reduceat(inputs["RAGGED"], offsets[:-1]).reshape(-1, 1)
        return {"SUMS": sums, "ECHO": inputs["RAGGED"] * 2}

    def close(self) -> None:
        pass


def test_the_batcher_batches_ragged_requests_but_not_other_shapes() -> None:
    async def scenario() -> tuple[list[list[tuple[int, ...]]], list[dict[str, Array]]]:
        gate = threading.Event()
        backend = _Summer(gate)
        config = parse_pbtxt(CONFIG + "dynamic_batching { max_queue_delay_microseconds: 0 }")
        instance = ModelInstance("r_0", Device(DeviceKind.CPU), backend)
        scheduler = DynamicBatcher(
            [instance], BatchingSettings.from_config(config), ["SUMS", "ECHO"]
        )
        scheduler.start()
        try:
            # The first runs alone (the gate holds it) while the others queue behind it.
            requests = [
                InferRequest(
                    "r",
                    {
                        "RAGGED": np.full((1, n), n, np.float32),
                        "FIXED": np.ones((1, width), np.float32),
                    },
                )
                for n, width in [(1, 2), (2, 2), (3, 2), (4, 5)]
            ]
            tasks = [asyncio.create_task(scheduler.submit(requests[0]))]
            await asyncio.sleep(0.1)
            tasks += [asyncio.create_task(scheduler.submit(r)) for r in requests[1:]]
            await asyncio.sleep(0.1)
            gate.set()
            results = await asyncio.gather(*tasks)
        finally:
            await scheduler.stop()
            instance.close()
        return backend.batches, results

    batches, results = asyncio.run(scenario())
    # Ragged lengths 2 and 3 share a batch; FIXED of width 5 differs, so it runs apart.
    assert batches == [[(1, 1)], [(1, 2), (1, 3)], [(1, 4)]]
    assert [r["SUMS"].tolist() for r in results] == [[[1.0]], [[4.0]], [[9.0]], [[16.0]]]
    assert [r["ECHO"].shape for r in results] == [(1, 1), (1, 2), (1, 3), (1, 4)]
