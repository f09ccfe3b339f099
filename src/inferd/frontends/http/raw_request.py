"""Triton's raw binary request: with `Inference-Header-Content-Length: 0` the whole body is the
data of the model's only input, whose datatype and shape come from the model configuration.

Error texts are Triton's, which clients and Triton's own tests match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from inferd.core.datatypes import BYTES, element_size
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array, InferRequest
from inferd.engine.request_checks import ModelTensor
from inferd.frontends.tensors import array_from_bytes


def decode_raw_request(
    body: bytes,
    inputs: Sequence[ModelTensor],
    max_batch_size: int,
    model_name: str,
    model_version: str,
) -> InferRequest:
    """The request for `body` to a model with `inputs` (the engine's, resolved at load); every
    output is answered as binary data, as Triton does."""
    if len(inputs) != 1:
        raise InvalidArgument(
            "Raw request must only have 1 input (found 1) to be deduced but got "
            f"{len(inputs)} inputs in '{model_name}' model configuration"
        )
    spec = inputs[0]
    batch = [1] if max_batch_size > 0 else []
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs={spec.name: _raw_input(body, spec, batch)},
        parameters={"binary_data_output": True},
    )


def _raw_input(body: bytes, spec: ModelTensor, batch: list[int]) -> Array:
    if spec.datatype == BYTES:
        # The body is one element, sent without the usual 4-byte length prefix.
        if spec.dims != (1,):
            raise InvalidArgument(
                f"For BYTE datatype raw input '{spec.name}', the model must have input shape [1]"
            )
        element = np.empty(1, dtype=np.object_)
        element[0] = body
        return element.reshape([*batch, 1])
    shape = _deduced_shape(spec, len(body))
    return array_from_bytes(memoryview(body), spec.name, spec.datatype, batch + shape)


def _deduced_shape(spec: ModelTensor, byte_size: int) -> list[int]:
    """The configured dims with their one variable-sized dimension (if any) filled from
    the body's size."""
    variable = [i for i, d in enumerate(spec.dims) if d < 0]
    if len(variable) > 1:
        raise InvalidArgument(
            f"The shape of the raw input '{spec.name}' can not be deduced because there are "
            "more than one variable-sized dimension"
        )
    shape = list(spec.dims)
    if variable:
        fixed = math.prod(d for d in spec.dims if d >= 0) * element_size(spec.datatype)
        if fixed == 0 or byte_size % fixed:
            raise InvalidArgument(
                f"raw input '{spec.name}' has {byte_size} bytes, not a whole number of "
                f"{spec.datatype} elements of shape {list(spec.dims)}"
            )
        shape[variable[0]] = byte_size // fixed
    return shape
