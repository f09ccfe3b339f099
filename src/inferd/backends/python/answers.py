"""Between the backend interface and the user's code: the `Batch` a model sees, and what its
`execute` returns turned into `BatchOutputs` (checked against the config's outputs)."""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.backends.python.api import Batch, InferenceError, Request
from inferd.backends.python.bls import BLS_CALLERS
from inferd.backends.python.step_requests import StepRequests
from inferd.backends.python.triton_errors import TritonError, raised_error
from inferd.core.batch_io import BatchIO
from inferd.core.errors import InferdError, InvalidArgument, ModelExecutionError
from inferd.core.types import Array

logger = logging.getLogger(__name__)

# Output name -> the numpy dtype its config datatype stands for (object for BYTES).
OutputDtypes = Mapping[str, np.dtype[Any]]


def make_batch(
    inputs: Mapping[str, Array],
    output_names: Sequence[str],
    requests: Sequence[BatchRequest],
    batched: bool,
    batch_io: BatchIO | None = None,
    steps: StepRequests | None = None,
) -> Batch:
    """The user's view of a batch: the stacked arrays as they are, each request's rows as views.

    Without a batch axis (max_batch_size 0) a batch holds one request, which owns every input.
    In a ragged batch (`batch_io`), a request sees its ragged inputs in its own shape and none
    of the batch inputs, which describe the whole batch. `steps`: an iterative sequence
    model's `Request`s, reused from the step before.
    """
    stacked = dict(inputs)
    if batch_io is not None:
        views = _ragged_views(stacked, requests, batch_io)
    elif batched:
        views = _row_views(stacked, requests)
    else:
        views = [stacked] * len(requests)
    own = [_own(r.parameters) for r in requests]
    if steps is not None:
        described = steps.described(requests, views, own)
    else:
        described = [
            Request(view, r.start, r.end, r.id, parameters, origin=r)
            for r, view, parameters in zip(requests, views, own, strict=True)
        ]
    return Batch(stacked, list(output_names), described)


def _row_views(
    stacked: dict[str, Array], requests: Sequence[BatchRequest]
) -> list[dict[str, Array]]:
    """Each request's rows of every stacked input, as views. Plain loops: an iterative
    model's step runs this for every request, and a comprehension per request (a function
    call each, before Python 3.12) cost about twice as much."""
    inputs = list(stacked.items())
    views = []
    for r in requests:
        start, end = r.start, r.end
        view = {}
        for name, array in inputs:
            view[name] = array[start:end]
        views.append(view)
    return views


def _ragged_views(
    stacked: dict[str, Array], requests: Sequence[BatchRequest], batch_io: BatchIO
) -> list[dict[str, Array]]:
    """Each request's inputs: rows of the stacked ones, its own part of the flattened ones."""
    fed = set(batch_io.fed)
    offsets = dict.fromkeys(batch_io.ragged, 0)
    views = []
    for r in requests:
        shapes = r.ragged_shapes or {}
        view = {}
        for name, array in stacked.items():
            shape = shapes.get(name)
            if shape is not None:
                start = offsets[name]
                offsets[name] = end = start + math.prod(shape)
                view[name] = array[start:end].reshape(shape)
            elif name not in fed:
                view[name] = array[r.start : r.end]
        views.append(view)
    return views


def _own(parameters: dict[str, Any]) -> dict[str, Any]:
    """A request's parameters without what inferd adds for itself."""
    own = dict(parameters)
    own.pop(BLS_CALLERS, None)
    return own


def as_inferd_error(error: BaseException) -> InferdError:
    """What a failure of user code means to the client: its fault, or the model's."""
    if isinstance(error, InferdError):
        return error
    if isinstance(error, InferenceError):
        return InvalidArgument(str(error))
    if isinstance(error, TritonError):
        return raised_error(error)
    logger.error("the Python model raised", exc_info=error)
    return ModelExecutionError(f"{type(error).__name__}: {error}")


def to_batch_outputs(
    result: object,
    batch: Batch,
    dtypes: OutputDtypes,
    batched: bool,
    scattered: Collection[str] = (),
) -> BatchOutputs:
    """Check and convert what `execute` returned; raises `ModelExecutionError` for a stacked
    answer that does not fit, while in the list form a bad answer fails only its request.
    `scattered` outputs (`batch_output`) are cut by shapes, not rows, so have no row count."""
    if isinstance(result, Mapping):
        rows = batch.requests[-1].end if batched and batch.requests else None
        return _outputs(result, batch.output_names, dtypes, rows, scattered)
    if isinstance(result, list | tuple):
        if len(result) != len(batch.requests):
            raise ModelExecutionError(
                f"execute returned {len(result)} answers for {len(batch.requests)} requests"
            )
        return [
            _answer(answer, request, batch.output_names, dtypes, batched)
            for answer, request in zip(result, batch.requests, strict=True)
        ]
    raise ModelExecutionError(
        "execute must return a dict of outputs or a list with one answer per request, "
        f"not {type(result).__name__}"
    )


def _answer(
    answer: object,
    request: Request,
    names: Sequence[str],
    dtypes: OutputDtypes,
    batched: bool,
) -> dict[str, Array] | InferdError:
    if isinstance(answer, BaseException):
        return as_inferd_error(answer)
    if answer is None and request.rescheduled:
        return {}  # handed back for another step: nothing to answer yet (Triton's None)
    if not isinstance(answer, Mapping):
        return ModelExecutionError(
            f"the answer for request {request.start} is a {type(answer).__name__}, "
            "not a dict of outputs or an exception"
        )
    try:
        return _outputs(answer, names, dtypes, request.end - request.start if batched else None)
    except ModelExecutionError as exc:
        return exc


def _outputs(
    returned: Mapping[str, Any],
    names: Sequence[str],
    dtypes: OutputDtypes,
    rows: int | None,
    scattered: Collection[str] = (),
) -> dict[str, Array]:
    outputs: dict[str, Array] = {}
    for name in names:
        if name not in returned:
            raise ModelExecutionError(
                f"execute did not return output '{name}' (returned: {sorted(returned)})"
            )
        array = convert_output(name, np.asarray(returned[name]), dtypes[name])
        if (
            rows is not None
            and (array.ndim == 0 or array.shape[0] != rows)
            and name not in scattered
        ):
            raise ModelExecutionError(
                f"output '{name}' has shape {list(array.shape)}, expected {rows} rows first"
            )
        outputs[name] = array
    return outputs


def convert_output(name: str, array: Array, dtype: np.dtype[Any]) -> Array:
    """`array` as the config's dtype; raises `ModelExecutionError` when it does not convert."""
    if array.dtype == dtype:
        return array
    if dtype.kind == "O":  # BYTES: str, bytes and object arrays are all encoded as they are
        if array.dtype.kind in "USO":
            return array
    elif np.can_cast(array.dtype, dtype, casting="same_kind"):
        return array.astype(dtype)
    raise ModelExecutionError(
        f"output '{name}' has dtype {array.dtype}, which does not convert to the config's {dtype}"
    )
