"""Tensor bytes on the wire, shared by every frontend: raw little-endian data <-> numpy."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from inferd.core.datatypes import (
    BYTES,
    deserialize_bytes,
    numpy_dtype,
    serialize_bytes,
)
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array

# numpy 1.x arrays hold at most 32 dimensions (numpy 2: 64); no model needs more.
MAX_DIMS = 32
# numpy refuses a shape whose dimensions other than 0, multiplied with the item size (at most
# 8 bytes here: FP64, INT64, a BYTES element's reference), pass its index type, even when a 0
# makes the tensor empty. A tensor with elements that large never gets past its data's size
# check; an empty one has no data to check, so its shape is refused here.
_MAX_SPAN = np.iinfo(np.intp).max // 8
# Far beyond any model's inputs or outputs; bounds the per-tensor work one request asks for.
MAX_TENSORS = 16_384


def check_tensor_count(count: int, kind: str) -> None:
    """Refuse a request with more than MAX_TENSORS `kind` ("inputs", "outputs")."""
    if count > MAX_TENSORS:
        raise InvalidArgument(f"the request has {count} {kind}; at most {MAX_TENSORS}")


def check_shape(shape: list[int], name: str) -> None:
    """Refuse shapes numpy cannot hold, naming the input."""
    if len(shape) > MAX_DIMS:
        raise InvalidArgument(f"input '{name}' has {len(shape)} dimensions; at most {MAX_DIMS}")
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input '{name}' has a negative dimension in shape {shape}")
    if 0 in shape and math.prod(d for d in shape if d) > _MAX_SPAN:
        raise InvalidArgument(f"input '{name}' has shape {shape}, larger than any tensor can be")


def array_from_bytes(
    data: memoryview, name: str, datatype: str, shape: list[int], model: str = ""
) -> Array:
    """A tensor viewing raw little-endian bytes (BYTES: length-prefixed elements); `model` (the
    request's) is named in errors, worded as Triton's (its QA matches them)."""
    count = math.prod(shape)
    if datatype == BYTES:
        where = f" for inference input '{name}'{_of_model(model)}"
        return deserialize_bytes(data, count, where).reshape(shape)
    dtype = numpy_dtype(datatype)
    expected = count * dtype.itemsize
    if len(data) != expected:
        raise InvalidArgument(
            f"input byte size mismatch for input '{name}'{_of_model(model)}. Expected "
            f"{expected}, got {len(data)}: shape {shape} of {datatype} needs {expected} bytes"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _of_model(model: str) -> str:
    return f" for model '{model}'" if model else ""


def raw_bytes(array: Array, datatype: str) -> bytes | memoryview:
    """A tensor's wire bytes: row-major little-endian, BYTES length-prefixed."""
    if datatype == BYTES:
        return serialize_bytes(array)
    raw: Any = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    return memoryview(raw)


class InputFaults:
    """The data faults of a request's inputs, reported together: which of several bad inputs
    a server names first is arbitrary (Triton's follows its hash map), so all are named.
    A decoder catches each input's `InvalidArgument` and `add`s it (a try block costs less
    per input than a context manager)."""

    __slots__ = ("_messages",)

    def __init__(self) -> None:
        self._messages: list[str] = []

    def add(self, error: InvalidArgument) -> None:
        self._messages.append(error.message)

    def raise_any(self) -> None:
        if self._messages:
            raise InvalidArgument("; ".join(self._messages))
