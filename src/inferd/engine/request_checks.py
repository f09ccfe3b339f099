"""Per-request checks against a loaded model's inputs and outputs: cheap, no per-element work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inferd.core.datatypes import numpy_dtype, v2_datatype
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ConfigTensor, tensor_datatype
from inferd.core.types import Array, InferRequest
from inferd.engine.classification import PARAMETER as CLASSIFICATION
from inferd.engine.classification import check_classification


@dataclass(frozen=True, slots=True)
class ModelTensor:
    """A config input or output as the request path needs it; `dims` exclude the batch axis."""

    name: str
    datatype: str
    dtype: np.dtype[Any]
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None
    optional: bool
    # An output's classification labels (its `label_filename`, read at load).
    labels: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, tensor: ConfigTensor) -> ModelTensor:
        datatype = tensor_datatype(tensor.data_type)
        reshape = tuple(tensor.reshape.shape) if tensor.HasField("reshape") else None
        optional = bool(getattr(tensor, "optional", False))
        return cls(
            tensor.name, datatype, numpy_dtype(datatype), tuple(tensor.dims), reshape, optional
        )

    def wire_shape(self, max_batch_size: int) -> list[int]:
        """The shape clients see in metadata: -1 leads when the model batches."""
        return [-1, *self.dims] if max_batch_size > 0 else list(self.dims)


def _shape_matches(shape: tuple[int, ...], dims: tuple[int, ...]) -> bool:
    return len(shape) == len(dims) and all(
        d == -1 or d == s for s, d in zip(shape, dims, strict=True)
    )


def _check_input(model: str, spec: ModelTensor, array: Array, max_batch_size: int) -> int:
    """Check one input's datatype and shape; return its batch size (0 when not batching)."""
    if array.dtype != spec.dtype:
        raise InvalidArgument(
            f"input '{spec.name}' has datatype {v2_datatype(array.dtype)}, "
            f"model '{model}' expects {spec.datatype}"
        )
    shape = array.shape
    rows = 0
    if max_batch_size > 0:
        rows = shape[0] if shape else 0
        if not 1 <= rows <= max_batch_size:
            raise InvalidArgument(
                f"input '{spec.name}' has batch size {rows}, model '{model}' accepts 1 to "
                f"{max_batch_size} (shape {list(shape)})"
            )
        shape = shape[1:]
    # The common case, the exact dims, is compared in C without a call.
    if shape != spec.dims and not _shape_matches(shape, spec.dims):
        raise InvalidArgument(
            f"input '{spec.name}' has shape {list(array.shape)}, model '{model}' expects "
            f"{spec.wire_shape(max_batch_size)}"
        )
    return rows


def check_request(
    request: InferRequest,
    inputs: dict[str, ModelTensor],
    outputs: dict[str, ModelTensor],
    max_batch_size: int,
) -> None:
    """Raise `InvalidArgument` naming the first way `request` does not fit the model."""
    model = request.model_name
    batch: int | None = None
    for name, array in request.inputs.items():
        spec = inputs.get(name)
        if spec is None:
            raise InvalidArgument(
                f"unexpected inference input '{name}' for model '{model}', "
                f"its inputs are {sorted(inputs)}"
            )
        rows = _check_input(model, spec, array, max_batch_size)
        if batch is not None and rows != batch:
            raise InvalidArgument(f"inputs of one request have different batch sizes for '{model}'")
        batch = rows
    # Every name given is a known input, so equal counts mean none is missing.
    if len(request.inputs) < len(inputs):
        missing = [n for n, s in inputs.items() if not s.optional and n not in request.inputs]
        if missing:
            raise InvalidArgument(_missing_inputs(model, inputs, request.inputs, missing))
    requested: set[str] = set()
    for output in request.outputs or ():
        if output.name not in outputs:
            raise InvalidArgument(
                f"unexpected inference output '{output.name}' for model '{model}', "
                f"its outputs are {sorted(outputs)}"
            )
        if output.name in requested:  # Triton's wording, which its clients' tests match
            raise InvalidArgument(f"output '{output.name}' already exists in request")
        if CLASSIFICATION in output.parameters:  # binary_data and the like need no check
            check_classification(output, outputs[output.name])
        requested.add(output.name)


def _missing_inputs(
    model: str, inputs: dict[str, ModelTensor], given: dict[str, Array], missing: list[str]
) -> str:
    """Triton's wording, which its QA (L0_input_validation) checks word for word."""
    required = sum(1 for spec in inputs.values() if not spec.optional)
    if required == len(inputs):
        expected = f"{required} inputs"
    else:
        expected = f"number of inputs between {required} and {len(inputs)}"
    return (
        f"expected {expected} but got {len(given)} inputs for model '{model}'. "
        f"Got input(s) {_names(sorted(given))}, but missing required input(s) "
        f"{_names(missing)}. Please provide all required input(s)."
    )


def _names(names: list[str]) -> str:
    return "[" + ",".join(f"'{name}'" for name in names) + "]"


def apply_reshape(
    array: Array, spec: ModelTensor, target: tuple[int, ...] | None, batched: bool
) -> Array:
    """View `array` with `target` as its non-batch shape (a config `reshape`, or back to dims)."""
    if target is None:
        return array
    lead = array.shape[:1] if batched else ()
    try:
        return array.reshape(lead + target)
    except ValueError:
        raise InvalidArgument(
            f"'{spec.name}' with shape {list(array.shape)} cannot be reshaped to {list(target)}"
        ) from None
