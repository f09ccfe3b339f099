"""Shared memory for the tensors of BLS calls between the server and a worker process: one
segment each way, in which each call's (or answer's) tensors take a region until the other
side says it copied them out (a worker's inputs: its call's final answer; an answer's
outputs: the worker's `AnswerRead`). Regions are taken first-fit, so concurrent calls share
one segment, which grows when they do not fit."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence

from inferd.backends.python.transport import ArrayMeta, Segment, lay_out, layout_end
from inferd.core.types import Array


class CallMemory:
    def __init__(self, segment: Segment, reserved: int = 0) -> None:
        self._segment = segment
        self._reserved = reserved  # bytes at the segment's start that hold no region
        self._lock = threading.Lock()  # several threads put, release and read
        self._taken: dict[Hashable, tuple[int, int]] = {}

    def put(self, owner: Hashable, arrays: Mapping[str, Array]) -> tuple[int, list[ArrayMeta]]:
        """Copy `arrays` into a region held for `owner`; returns the bytes the reader maps
        and the metas."""
        layout = lay_out([arrays])
        size = layout_end(layout)
        with self._lock:
            start = self._free_start(size)
            self._taken[owner] = (start, start + size)
            shifted = [
                [(meta._replace(offset=meta.offset + start), data) for meta, data in layout[0]]
            ]
            end, metas = self._segment.write_laid_out(shifted)
        return end, metas[0]

    def release(self, owner: Hashable) -> None:
        with self._lock:
            self._taken.pop(owner, None)

    def take_out(self, size: int, metas: Sequence[ArrayMeta]) -> dict[str, Array]:
        """Copies of the arrays another process put."""
        with self._lock:
            return self._segment.read(size, metas, copy=True)

    def _free_start(self, size: int) -> int:
        start = self._reserved
        for taken_start, taken_end in sorted(self._taken.values()):
            if taken_start - start >= size:
                break
            start = max(start, taken_end)
        return start
