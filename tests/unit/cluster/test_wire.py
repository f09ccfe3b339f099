"""A batch and its answer as they cross to a host: the same arrays and requests on the other
side, small arrays as bytes that Ray's MessagePack encoder takes without pickling, and large
ones (or ones of Python objects) left as arrays for Ray's object store."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("ray")
from ray._raylet import MessagePackSerializer

from inferd.backends.base import BatchRequest
from inferd.cluster.wire import (
    INLINE_BYTES,
    pack_answer,
    pack_batch,
    unpack_answer,
    unpack_batch,
)
from inferd.core.errors import InvalidArgument


def through_ray(value: Any) -> tuple[Any, list[Any]]:
    """`value` after Ray's encoding of an argument, and what Ray had to pickle of it."""
    pickled: list[Any] = []

    def pickle(item: Any) -> int:
        pickled.append(item)
        return len(pickled) - 1

    data = MessagePackSerializer.dumps(value, pickle)
    return MessagePackSerializer.loads(data, lambda index: pickled[index]), pickled


def test_a_small_batch_crosses_without_pickling() -> None:
    inputs = {
        "A": np.arange(12, dtype=np.float32).reshape(3, 4),
        "B": np.array([[True], [False], [True]]),
        "C": np.arange(6, dtype=">i8").reshape(3, 2)[:, ::-1],  # big-endian, not contiguous
    }
    requests = [
        BatchRequest(0, 1, "first", {"temperature": 0.5}),
        BatchRequest(1, 3, ragged_shapes={"A": (2, 4)}),
    ]
    crossed, pickled = through_ray(pack_batch(inputs, ["OUT"], requests))
    assert pickled == []
    arrays, names, got = unpack_batch(crossed)
    assert names == ["OUT"]
    for name, array in inputs.items():
        assert arrays[name].dtype == array.dtype
        np.testing.assert_array_equal(arrays[name], array)
        assert not arrays[name].flags.writeable
    assert [(r.start, r.end, r.id, r.parameters, r.ragged_shapes) for r in got] == [
        (0, 1, "first", {"temperature": 0.5}, None),
        (1, 3, "", {}, {"A": (2, 4)}),
    ]


def test_large_and_object_arrays_stay_arrays_for_the_object_store() -> None:
    large = np.zeros(INLINE_BYTES // 4 + 1, np.float32)
    text = np.array([b"a", b"bc"], dtype=np.object_)
    _, pickled = through_ray(pack_batch({"L": large, "T": text}, [], [BatchRequest(0, 1)]))
    assert [type(item) for item in pickled] == [np.ndarray, np.ndarray]
    crossed, _ = through_ray(pack_batch({"L": large, "T": text}, [], [BatchRequest(0, 1)]))
    arrays, _, _ = unpack_batch(crossed)
    np.testing.assert_array_equal(arrays["L"], large)
    assert arrays["T"].tolist() == [b"a", b"bc"]


def test_an_answer_crosses_back_stacked_or_per_request() -> None:
    outputs = {"OUT": np.full((2, 2), 7, np.int32)}
    crossed, pickled = through_ray(pack_answer(outputs, 1234, "incarnation"))
    assert pickled == []
    got, compute_ns, incarnation = unpack_answer(crossed)
    assert isinstance(got, dict) and (compute_ns, incarnation) == (1234, "incarnation")
    np.testing.assert_array_equal(got["OUT"], outputs["OUT"])

    per_request = [{"OUT": np.ones(1)}, InvalidArgument("bad row")]
    crossed, _ = through_ray(pack_answer(per_request, 5, "i"))
    got, _, _ = unpack_answer(crossed)
    assert isinstance(got, list) and isinstance(got[1], InvalidArgument)
    np.testing.assert_array_equal(got[0]["OUT"], np.ones(1))


def _sequence_batch(state_bytes: int) -> tuple[Any, Any]:
    """A batch of 4 sequences (the second one starting, the last one ending), each holding
    `state_bytes` of state, and its settings."""
    from inferd.scheduling.batch import Batch
    from inferd.scheduling.sequence_slots import SequenceRecord, SequenceStep
    from tests.unit.scheduling.test_sequence import sequence_settings, step

    settings = sequence_settings(
        extra=f'state [ {{ input_name: "S_IN", output_name: "S_OUT", data_type: TYPE_UINT8, '
        f"dims: [ {state_bytes} ] }} ]"
    )
    rows: list[SequenceStep | None] = []
    for slot in range(4):
        sequence = SequenceRecord(slot + 1)
        sequence.index = slot
        sequence.states["S_IN"] = np.full(state_bytes, slot, np.uint8)
        start, end = slot == 1, slot == 3
        request = step(slot, slot + 1, start, end)
        rows.append(SequenceStep(request, None, 0, 1, sequence, start, end))  # type: ignore[arg-type]
    return Batch(rows), settings


def test_a_sequence_batch_for_a_host_that_holds_the_states_carries_none() -> None:
    from inferd.scheduling.held_states import END, START, STATE_ROWS, HeldStateBatches
    from inferd.scheduling.sequence_tensors import SequenceBatches

    batch, settings = _sequence_batch(16 * 1024)
    kept_here = SequenceBatches(settings, ["y"])
    packed = pack_batch(kept_here.inputs(batch), kept_here.output_names(batch), batch.requests)
    assert "S_IN" in [item[0] for item in packed[0]] and packed[1] == ["y", "S_OUT"]

    held = HeldStateBatches(settings, ["y"])
    packed = pack_batch(held.inputs(batch), held.output_names(batch), batch.requests)
    crossed, pickled = through_ray(packed)
    assert pickled == []
    assert len(MessagePackSerializer.dumps(packed, lambda item: 0)) < 1024
    arrays, names, _ = unpack_batch(crossed)
    assert names == ["y"] and "S_IN" not in arrays
    assert arrays[STATE_ROWS].tolist() == [[0, 0], [1, START], [2, 0], [3, END]]
