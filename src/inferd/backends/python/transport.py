"""Tensors between the server and a worker process through shared memory.

Each direction has one `Segment`: an unlinked file in /dev/shm (so nothing leaks, whoever
dies), created by the server and inherited by the worker as a file descriptor. The writer
grows it when a batch does not fit; the reader remaps when a message names a larger size.
Only `ArrayMeta` (name, datatype, shape, offset) crosses the pipe. Fixed-size tensors are
copied in raw; BYTES (object) tensors, whose elements live in Python objects, are pickled in.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO, Any, NamedTuple

import numpy as np

from inferd.core.datatypes import BYTES, numpy_dtype, v2_datatype
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array

_ALIGN = 64
_MIN_SIZE = 1 << 20
_SHM_DIR = "/dev/shm"  # memory-backed on Linux; elsewhere the temp folder stands in


class ArrayMeta(NamedTuple):
    name: str
    datatype: str  # a V2 datatype for raw data; "" for a pickled array
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def _raw_datatype(array: Array) -> str:
    """The V2 datatype when the array's bytes can be copied as they are, else ""."""
    try:
        datatype = v2_datatype(array.dtype)
    except InvalidArgument:  # no V2 datatype (complex, datetime, ...): pickled
        return ""
    # BYTES covers object, str and bytes arrays, whose elements are not in the array's memory.
    return "" if datatype == BYTES else datatype


class Segment:
    """A growable shared-memory region, mapped in both processes."""

    def __init__(self, fd: int, owner: IO[bytes] | None = None) -> None:
        self.fd = fd
        self._owner = owner  # keeps the creating side's file open
        self._map: mmap.mmap | None = None

    @classmethod
    def create(cls, size: int = _MIN_SIZE) -> Segment:
        # Unlinked at once: the memory lives while a process holds the descriptor, no longer.
        file = tempfile.TemporaryFile(dir=_SHM_DIR if os.path.isdir(_SHM_DIR) else None)  # noqa: SIM115
        os.ftruncate(file.fileno(), size)
        return cls(file.fileno(), file)

    def _buffer(self, size: int) -> mmap.mmap:
        """A mapping of at least `size` bytes, growing the file first when it is smaller."""
        if self._map is not None and len(self._map) >= size:
            return self._map
        current = os.fstat(self.fd).st_size
        if current < size:
            current = max(size, 2 * current, _MIN_SIZE)
            os.ftruncate(self.fd, current)
        # The old mapping is dropped, not closed: arrays handed out may still view it.
        self._map = mmap.mmap(self.fd, current)
        return self._map

    def write(
        self, groups: Sequence[Mapping[str, Array]], start: int = 0
    ) -> tuple[int, list[list[ArrayMeta]]]:
        """Lay out (from `start`) and copy every array of every group; returns where the bytes
        used end, and the metas."""
        return self.write_laid_out(lay_out(groups, start))

    def write_laid_out(self, layout: Layout) -> tuple[int, list[list[ArrayMeta]]]:
        """Copy what `lay_out` placed; returns where it ends, and the metas."""
        end = layout_end(layout)
        buffer = self._buffer(end)
        for placed in layout:
            for meta, data in placed:
                if isinstance(data, bytes):
                    buffer[meta.offset : meta.offset + meta.nbytes] = data
                else:
                    np.copyto(_view(buffer, meta), data, casting="no")
        return end, [[meta for meta, _ in placed] for placed in layout]

    def read(self, size: int, metas: Sequence[ArrayMeta], copy: bool) -> dict[str, Array]:
        """The arrays `metas` describe; views into the segment unless `copy`."""
        buffer = self._buffer(size)
        arrays: dict[str, Array] = {}
        for meta in metas:
            if meta.datatype:
                view = _view(buffer, meta)
                arrays[meta.name] = view.copy() if copy else view
            else:
                arrays[meta.name] = pickle.loads(buffer[meta.offset : meta.offset + meta.nbytes])
        return arrays

    def load_word(self) -> int:
        """The segment's first 8 bytes, as an unsigned number (one aligned load)."""
        return int(_word(self._buffer(_ALIGN))[0])

    def store_word(self, value: int) -> None:
        """Store `value` in the segment's first 8 bytes (one aligned store), for the other
        process to load."""
        _word(self._buffer(_ALIGN))[0] = value

    def close(self) -> None:
        # Unmapped now (not when this object goes, which a reference cycle may put off),
        # unless arrays still view the mapping: they keep it.
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()
                self._map = None
        if self._owner is not None:
            self._owner.close()
        else:
            os.close(self.fd)


# Each group's arrays, each with its meta and its data (BYTES and the like pickled).
Layout = list[list[tuple[ArrayMeta, Array | bytes]]]


def lay_out(groups: Sequence[Mapping[str, Array]], start: int = 0) -> Layout:
    """Where each array of each group goes, from `start` (aligned) on."""
    layout: Layout = []
    offset = start
    for arrays in groups:
        placed: list[tuple[ArrayMeta, Array | bytes]] = []
        for name, array in arrays.items():
            datatype = _raw_datatype(array)
            data: Array | bytes = array if datatype else pickle.dumps(array, protocol=5)
            nbytes = array.nbytes if datatype else len(data)
            placed.append((ArrayMeta(name, datatype, array.shape, offset, nbytes), data))
            offset += -(-nbytes // _ALIGN) * _ALIGN
        layout.append(placed)
    return layout


def layout_end(layout: Layout, start: int = 0) -> int:
    """Where the bytes of `layout` end (aligned)."""
    return max(
        (
            meta.offset + -(-meta.nbytes // _ALIGN) * _ALIGN
            for placed in layout
            for meta, _ in placed
        ),
        default=start,
    )


def _word(buffer: Any) -> Array:
    return np.ndarray((1,), np.uint64, buffer=buffer)


def _view(buffer: Any, meta: ArrayMeta) -> Array:
    return np.ndarray(meta.shape, numpy_dtype(meta.datatype), buffer=buffer, offset=meta.offset)
