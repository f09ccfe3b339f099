"""Shared-memory segments: arrays round-trip, the segment grows, BYTES are pickled in."""

from __future__ import annotations

import os

import ml_dtypes
import numpy as np

from inferd.backends.python.transport import Segment


def test_arrays_round_trip_through_a_second_mapping() -> None:
    writer = Segment.create(4096)
    reader = Segment(os.dup(writer.fd))  # as the worker sees it: the same memory, its own map
    arrays = {
        "f": np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2],  # not contiguous
        "b": np.array([True, False]),
        "h": np.ones(3, dtype=ml_dtypes.bfloat16),
        "s": np.array([[b"ab", b""], [b"\xff", b"xyz"]], dtype=object),
    }
    size, [metas] = writer.write([arrays])
    read = reader.read(size, metas, copy=False)
    for name, array in arrays.items():
        assert read[name].dtype == array.dtype
        np.testing.assert_array_equal(read[name], array)
    assert all(read[name].ctypes.data % 64 == 0 for name in "fbh")
    writer.close()
    reader.close()


def test_segment_grows_and_the_reader_follows() -> None:
    writer = Segment.create(4096)
    reader = Segment(os.dup(writer.fd))
    small = {"x": np.ones(10, dtype=np.int64)}
    reader.read(*_flat(writer.write([small])), copy=True)
    big = {"x": np.arange(3 << 20, dtype=np.int64)}  # 24 MiB, beyond the first mapping
    read = reader.read(*_flat(writer.write([big])), copy=True)
    np.testing.assert_array_equal(read["x"], big["x"])
    writer.close()
    reader.close()


def test_groups_keep_their_own_arrays() -> None:
    segment = Segment.create()
    size, groups = segment.write([{"a": np.zeros(2)}, {"a": np.ones(3)}])
    assert [segment.read(size, metas, copy=True)["a"].tolist() for metas in groups] == [
        [0.0, 0.0],
        [1.0, 1.0, 1.0],
    ]
    segment.close()


def _flat(written: tuple[int, list[list[object]]]) -> tuple[int, list[object]]:
    size, groups = written
    return size, groups[0]
