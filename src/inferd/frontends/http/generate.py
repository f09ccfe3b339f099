"""Triton's generate extension: a flat JSON object <-> one InferRequest / one response object.

A request's keys, read as Triton reads them (docs/streaming.md, "Generate and SSE"):
    a key naming a model input      that input's value (below)
    "parameters"                    an object whose keys are read the same way
    "id"                            the request id
    any other key                   a request parameter: a string, number or boolean

A value fills its input's configured shape (a batch of 1 in front for a batching model) with
the input's configured datatype: a scalar is one element; a flat list fills the shape in order,
its innermost -1 taking what the fixed dimensions leave and any other -1 being 1; a nested
list must have the input's shape itself. A response is one object: each output by name (an
output of one element as a scalar, any other as a flat list), the response's parameters, and
model_name, model_version and id.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from inferd.core.datatypes import v2_datatype
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array, InferRequest, InferResponse, Timestamps
from inferd.engine.request_checks import ModelTensor
from inferd.frontends.http.codec import json_data, loads, values_from_json

_PARAMETER_TYPES = (str, int, float, bool)


def decode_generate_request(
    body: bytes,
    inputs: Sequence[ModelTensor],
    max_batch_size: int,
    model_name: str,
    model_version: str,
) -> InferRequest:
    """The request for a generate `body` to a model with `inputs` (the engine's, resolved at
    load)."""
    document = loads(body, "generate request")
    if not isinstance(document, dict):
        raise InvalidArgument("the generate request must be a JSON object")
    request_id = document.pop("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument("'id' must be a string")
    nested = document.pop("parameters", None)
    if nested is not None and not isinstance(nested, dict):
        raise InvalidArgument("'parameters' of the generate request must be an object")
    reader = _Reader({spec.name: spec for spec in inputs}, max_batch_size > 0, model_name)
    reader.read(document)
    reader.read(nested or {})
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=reader.tensors,
        id=request_id,
        parameters=reader.parameters,
        # Triton's trace files mark each response of a generate request complete.
        timestamps=Timestamps(responses=[]),
    )


class _Reader:
    """Sorts the keys of a generate request into input tensors and request parameters."""

    def __init__(self, specs: dict[str, ModelTensor], batched: bool, model: str) -> None:
        self._specs = specs
        self._batched = batched
        self._model = model
        self.tensors: dict[str, Array] = {}
        self.parameters: dict[str, Any] = {}

    def read(self, document: dict[str, Any]) -> None:
        for key, value in document.items():
            if key in self.tensors or key in self.parameters:
                raise InvalidArgument(f"'{key}' appears both at the top level and in 'parameters'")
            spec = self._specs.get(key)
            if spec is not None:
                self.tensors[key] = tensor_from_json(value, spec, self._batched, self._model)
            elif isinstance(value, _PARAMETER_TYPES):
                self.parameters[key] = value
            else:
                raise InvalidArgument(
                    f"'{key}' is not an input of model '{self._model}' (its inputs are "
                    f"{sorted(self._specs)}), and a parameter must be a string, number or "
                    "boolean"
                )


def tensor_from_json(value: Any, spec: ModelTensor, batched: bool, model: str) -> Array:
    """`value` (a JSON scalar or list) as input `spec` of `model`, shaped from its config."""
    name = spec.name
    if value is None or isinstance(value, dict):
        kind = "null" if value is None else "an object"
        raise InvalidArgument(
            f"input '{name}' of model '{model}' takes {spec.datatype} values (one, or a list), "
            f"not {kind}"
        )
    data = value if isinstance(value, list) else [value]
    if -1 not in spec.dims and len(data) > math.prod(spec.dims):  # refuse before converting
        raise _unfillable(spec, batched, model, _values(len(data)))
    array = values_from_json(data, name, spec.datatype, "the value")
    if array.ndim > 1:
        return array.reshape(_nested_shape(array, spec, batched, model))
    shape = _filled(spec.dims, array.size)
    if shape is None:
        raise _unfillable(spec, batched, model, _values(array.size))
    return array.reshape([1, *shape] if batched else shape)


def _filled(dims: tuple[int, ...], count: int) -> list[int] | None:
    """`dims` with their -1s resolved for `count` elements, as Triton resolves them: the
    innermost -1 takes what the fixed dimensions leave, other -1s are 1; None when `count`
    elements cannot fill `dims`."""
    fixed = math.prod(d for d in dims if d >= 0)
    variable = [i for i, d in enumerate(dims) if d < 0]
    if not variable:
        return list(dims) if count == fixed else None
    if fixed == 0 or count % fixed:
        return None
    shape = [1 if d < 0 else d for d in dims]
    shape[variable[-1]] = count // fixed
    return shape


def _nested_shape(array: Array, spec: ModelTensor, batched: bool, model: str) -> list[int]:
    """A nested list gives its own shape, which must be the input's (the batch of 1 may be
    left out)."""
    shape = list(array.shape)
    if batched and len(shape) == len(spec.dims) + 1 and shape[0] == 1:
        shape = shape[1:]
    fits = len(shape) == len(spec.dims) and all(
        d in (-1, s) for s, d in zip(shape, spec.dims, strict=True)
    )
    if not fits:
        raise _unfillable(spec, batched, model, f"a nested list of shape {list(array.shape)}")
    return [1, *shape] if batched else shape


def _values(count: int) -> str:
    return "1 value" if count == 1 else f"{count} values"


def _unfillable(spec: ModelTensor, batched: bool, model: str, given: str) -> InvalidArgument:
    batch = " after a batch dimension of 1" if batched else ""
    return InvalidArgument(
        f"input '{spec.name}' of model '{model}' has shape {list(spec.dims)}{batch}; "
        f"{given} cannot fill it"
    )


async def responses_with_outputs(
    responses: AsyncIterator[InferResponse],
) -> AsyncIterator[InferResponse]:
    """The responses that are `generated`."""
    async for response in responses:
        if generated(response):
            yield response


def generated(response: InferResponse) -> bool:
    """Whether `response` is one to answer with: a decoupled model's final flag sent on its
    own (an empty final response) is no response of its own to generate, as in Triton."""
    return bool(response.outputs) or not response.final


def encode_generate_response(response: InferResponse) -> bytes:
    """One response as the generate extension writes it (Triton's precedence when names
    clash: model_name, model_version and id, then parameters, then outputs)."""
    document: dict[str, Any] = {
        name: _output_value(array) for name, array in response.outputs.items()
    }
    document.update(response.parameters)
    document["model_name"] = response.model_name
    document["model_version"] = response.model_version
    if response.id:
        document["id"] = response.id
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def _output_value(array: Array) -> Any:
    # One integer or flag (a token id) as a Python scalar: the same JSON, written sooner. Not a
    # float: orjson writes a float32 by its own shortest digits, a Python float by a double's.
    if array.size == 1 and array.dtype.kind in "biu":
        return array.item()
    data = json_data(array, v2_datatype(array.dtype))
    return data[0] if array.size == 1 else data
