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
