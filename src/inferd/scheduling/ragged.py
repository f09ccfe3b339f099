"""Ragged batches, as Triton builds them: requests whose ragged inputs differ in shape share a
batch without padding.

A ragged input (`allow_ragged_batch`) reaches the model as one 1-D tensor, each request's
elements flattened and concatenated in batch order; every other input is stacked along the
batch axis as usual. Each `batch_input` entry adds a tensor describing the batch from its source
input's per-request shapes (`batch_input_tensor`), and each `batch_output` target is cut back
per request by its source input's shape (`scatter`) instead of by rows. Models without any of
this never come here: the dynamic batcher keeps its plain stacking for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from inferd.core.batch_io import (
    BATCH_ACCUMULATED_ELEMENT_COUNT,
    BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO,
    BATCH_ELEMENT_COUNT,
    BATCH_ITEM_SHAPE,
    BATCH_ITEM_SHAPE_FLATTEN,
    BATCH_MAX_ELEMENT_COUNT_AS_SHAPE,
    BatchIO,
    ScatterSpec,
)
from inferd.core.errors import Internal
from inferd.core.types import Array, InferRequest
from inferd.scheduling.batch import Batch, P, split_rows

Shape = tuple[int, ...]


def ragged_signature(ragged: frozenset[str]) -> Callable[[InferRequest], tuple[Any, ...]]:
    """What must match for two requests to share a batch: every input's non-batch shape,
    except a ragged input's, which may differ."""

    def signature(request: InferRequest) -> tuple[Any, ...]:
        return tuple(
            sorted(
                (name, None if name in ragged else array.shape[1:])
                for name, array in request.inputs.items()
            )
        )

    return signature


def batch_input_tensor(kind: str, shapes: Sequence[Shape], dtype: str) -> Array:
    """The tensor a `batch_input` of `kind` adds for requests whose source input has `shapes`
    (batch axis first): counts are of the request's elements, batch axis included."""
    if kind in (BATCH_ITEM_SHAPE, BATCH_ITEM_SHAPE_FLATTEN):
        # One row per batch item: the request's shape without its batch axis, repeated.
        items = np.array([shape[1:] for shape in shapes], dtype=dtype)
        rows = np.repeat(items.reshape(len(shapes), -1), [shape[0] for shape in shapes], axis=0)
        return rows if kind == BATCH_ITEM_SHAPE else rows.reshape(-1)
    counts = np.array([math.prod(shape) for shape in shapes], dtype=np.int64)
    if kind == BATCH_ELEMENT_COUNT:
        return counts.astype(dtype)
    if kind == BATCH_ACCUMULATED_ELEMENT_COUNT:
        return np.cumsum(counts).astype(dtype)
    if kind == BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO:
        return np.concatenate(([0], np.cumsum(counts))).astype(dtype)
    if kind == BATCH_MAX_ELEMENT_COUNT_AS_SHAPE:
        # Only its shape speaks; Triton leaves the values uninitialised, inferd zeroes them.
        return np.zeros(int(counts.max()), dtype=dtype)
    raise Internal(f"unknown batch input kind '{kind}'")


def scatter(name: str, output: Array, spec: ScatterSpec, shapes: Sequence[Shape]) -> list[Array]:
    """Each request's part of a `BATCH_SCATTER_WITH_INPUT_SHAPE` output: consecutive elements
    of the flattened output, shaped like the output with each -1 taken from the request's
    source input shape."""
    flat = output.reshape(-1)
    parts = []
    offset = 0
    for shape in shapes:
        dims = tuple(shape[i] if d == -1 else d for i, d in enumerate(spec.template))
        end = offset + math.prod(dims)
        if end > flat.size:
            raise Internal(
                f"output '{name}' has {flat.size} elements, fewer than the shapes of "
                f"'{spec.source}' in the batch scatter it into ({end} or more)"
            )
        parts.append(flat[offset:end].reshape(dims))
        offset = end
    return parts


def ragged_inputs(io: BatchIO, batch: Batch[P]) -> dict[str, Array]:
    """The batch's inputs: ragged ones flattened and concatenated, the others stacked, plus the
    batch inputs. Also tells each request's `BatchRequest` its ragged inputs' shapes, so a
    backend that hands a model its requests one by one can cut them back out."""
    given = [call.request.inputs for call in batch.calls]
    inputs: dict[str, Array] = {}
    for name in given[0]:
        if name in io.ragged:
            parts = [request[name].reshape(-1) for request in given]
        else:
            parts = [request[name] for request in given]
        inputs[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    for spec in io.inputs:
        tensor = batch_input_tensor(spec.kind, [r[spec.source].shape for r in given], spec.dtype)
        for target in spec.targets:
            inputs[target] = tensor
    if io.ragged:
        for part, request in zip(batch.requests, given, strict=True):
            part.ragged_shapes = {
                name: request[name].shape for name in io.ragged if name in request
            }
    return inputs


def ragged_split(io: BatchIO, batch: Batch[P], outputs: dict[str, Array]) -> list[dict[str, Array]]:
    """Each request's outputs: batch outputs scattered by their source input's shapes, the
    others cut by rows."""
    scattered = io.scattered
    rows = {name: array for name, array in outputs.items() if name not in scattered}
    # One request has the batch to itself, batch axis or none.
    parts = [rows] if len(batch.calls) == 1 else split_rows(batch, rows)
    for name, array in outputs.items():
        spec = scattered.get(name)
        if spec is not None:
            shapes = [call.request.inputs[spec.source].shape for call in batch.calls]
            for part, piece in zip(parts, scatter(name, array, spec, shapes), strict=True):
                part[name] = piece
    return parts
