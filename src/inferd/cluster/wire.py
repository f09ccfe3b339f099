"""How a batch travels to its host and its outputs come back: one argument and one answer, made
of values Ray encodes without pickling.

Ray encodes a call's arguments and answer with MessagePack and pickles what MessagePack cannot
hold (a NumPy array, a dataclass, a tuple), one pickle per argument. At 1 to 64 KiB that
pickling, on both sides and both ways, is a measurable share of the call (`benchmarks/
cluster_hop.py`). So a small array travels as its dtype, shape and bytes, a request as a
list, and the batch as one argument. An array larger than `INLINE_BYTES` (or one of Python
objects, or of a dtype NumPy does not build in) stays an array: Ray then moves it through its
object store and the reader maps it without a copy. Arrays rebuilt on the other side are
read-only, as those from the object store are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.core.types import Array

# Below Ray's own limit for passing an argument inline (100 KiB): a larger array goes to
# the object store, where its bytes would be copied once more than an array's.
INLINE_BYTES = 64 * 1024
# Lists, not tuples: Ray's MessagePack encoder takes no tuple, and would pickle it whole.
# A packed array: [name, array], or [name, dtype, shape, bytes] for a small one.
PackedArray = list[Any]
# A packed batch: [its arrays, the output names, each request's [start, end, id,
# parameters, ragged shapes]].
PackedBatch = list[Any]
# A packed answer: [stacked?, the outputs, the backend's time (ns), the host's incarnation].
PackedAnswer = list[Any]


def pack_batch(
    inputs: Mapping[str, Array], output_names: Sequence[str], requests: Sequence[BatchRequest]
) -> PackedBatch:
    return [
        pack_arrays(inputs),
        list(output_names),
        [[r.start, r.end, r.id, r.parameters, _shapes(r.ragged_shapes)] for r in requests],
    ]


def unpack_batch(batch: PackedBatch) -> tuple[dict[str, Array], list[str], list[BatchRequest]]:
    arrays, output_names, requests = batch
    return (
        unpack_arrays(arrays),
        output_names,
        [
            BatchRequest(
                start,
                end,
                request_id,
                parameters,
                ragged_shapes=None
                if ragged is None
                else {name: tuple(shape) for name, shape in ragged.items()},
            )
            for start, end, request_id, parameters, ragged in requests
        ],
    )


def pack_answer(outputs: BatchOutputs, compute_ns: int, incarnation: str) -> PackedAnswer:
    """Stacked outputs packed; one answer per request (rare) as it is."""
    if isinstance(outputs, dict):
        return [True, pack_arrays(outputs), compute_ns, incarnation]
    return [False, outputs, compute_ns, incarnation]


def unpack_answer(answer: PackedAnswer) -> tuple[BatchOutputs, int, str]:
    stacked, outputs, compute_ns, incarnation = answer
    return (unpack_arrays(outputs) if stacked else outputs), compute_ns, incarnation


def pack_arrays(arrays: Mapping[str, Array]) -> list[PackedArray]:
    return [
        [name, array.dtype.str, list(array.shape), array.tobytes()]
        if array.nbytes <= INLINE_BYTES and array.dtype.kind in "biufc"
        else [name, array]
        for name, array in arrays.items()
    ]


def unpack_arrays(packed: Sequence[PackedArray]) -> dict[str, Array]:
    arrays: dict[str, Array] = {}
    for item in packed:
        if len(item) == 2:
            arrays[item[0]] = item[1]
        else:
            name, dtype, shape, data = item
            arrays[name] = np.frombuffer(data, dtype).reshape(shape)
    return arrays


def _shapes(ragged: Mapping[str, tuple[int, ...]] | None) -> dict[str, list[int]] | None:
    return None if ragged is None else {name: list(shape) for name, shape in ragged.items()}
