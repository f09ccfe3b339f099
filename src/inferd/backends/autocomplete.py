"""Fill a partial config's inputs, outputs and batching from the tensors a model file declares.

Triton's rules, shared by every backend that can read its model's tensors: inputs and outputs
are filled only when the config lists none; `max_batch_size` is inferred (set to the server's
default) only when the config gives no tensors and no batch size and every tensor's first axis
is dynamic; tensor names the config gives must exist in the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inferd.core.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class ModelTensor:
    """One input or output as the model file declares it, in the model config's terms."""

    name: str
    data_type: str | None  # config enum name (TYPE_FP32); None when the config has no such type
    shape: tuple[int | None, ...]  # None (or a negative size) for an axis of unknown size
    framework_type: str  # the framework's own name of the type, for error messages


def complete_tensors(
    config: Any,
    inputs: Sequence[ModelTensor],
    outputs: Sequence[ModelTensor],
    default_batch: int,
    model: str,
) -> None:
    """Complete `config` from a model's tensors; `model` names the model in errors
    ("the ONNX model")."""
    fill_inputs, fill_outputs = not config.input, not config.output
    infer_batching = fill_inputs and fill_outputs and config.max_batch_size == 0
    if (
        infer_batching
        and default_batch > 0
        and all(_dynamic_first_axis(t.shape) for t in [*inputs, *outputs])
    ):
        config.max_batch_size = default_batch
    skip = 1 if config.max_batch_size > 0 else 0
    if fill_inputs:
        for tensor in inputs:
            _add_tensor(config.input.add(), tensor, skip)
    if fill_outputs:
        for tensor in outputs:
            _add_tensor(config.output.add(), tensor, skip)
    check_names("input", [t.name for t in config.input], [t.name for t in inputs], model)
    check_names("output", [t.name for t in config.output], [t.name for t in outputs], model)


def check_names(kind: str, configured: list[str], in_model: list[str], model: str) -> None:
    unknown = sorted(set(configured) - set(in_model))
    if unknown:
        raise InvalidArgument(
            f"config {kind} {unknown} not in {model}, whose {kind}s are {in_model}"
        )


def _dynamic_first_axis(shape: tuple[int | None, ...]) -> bool:
    return len(shape) > 0 and (shape[0] is None or shape[0] < 0)


def _add_tensor(entry: Any, tensor: ModelTensor, skip: int) -> None:
    if tensor.data_type is None:
        raise InvalidArgument(f"'{tensor.name}' has unsupported type {tensor.framework_type}")
    entry.name = tensor.name
    entry.data_type = tensor.data_type
    entry.dims.extend(-1 if d is None or d < 0 else d for d in tensor.shape[skip:])
