"""The shared memory of BLS calls' tensors: regions held until released, reused first-fit."""

from __future__ import annotations

import numpy as np

from inferd.backends.python.call_memory import CallMemory
from inferd.backends.python.transport import Segment


def test_concurrent_regions_do_not_overlap_and_freed_ones_are_reused() -> None:
    writer_segment = Segment.create()
    writer = CallMemory(writer_segment)
    reader = CallMemory(Segment(writer_segment.fd, None))
    first = {"A": np.arange(1000, dtype=np.float32)}
    second = {"B": np.full((10, 10), 7, dtype=np.int64), "S": np.array([b"x", b"yz"], dtype=object)}
    size_1, metas_1 = writer.put("first", first)
    size_2, metas_2 = writer.put("second", second)
    assert metas_2[0].offset >= metas_1[0].offset + first["A"].nbytes  # both held: no overlap
    np.testing.assert_array_equal(reader.take_out(size_1, metas_1)["A"], first["A"])
    got = reader.take_out(size_2, metas_2)
    np.testing.assert_array_equal(got["B"], second["B"])
    assert got["S"].tolist() == [b"x", b"yz"]
    writer.release("first")
    _, metas_3 = writer.put("third", {"C": np.ones(10, dtype=np.float32)})
    assert metas_3[0].offset == 0  # the first region is free again
    writer_segment.close()
