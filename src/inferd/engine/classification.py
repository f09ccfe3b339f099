"""Triton's classification extension: an output asked for with `classification: K` comes back
as BYTES `"score:index[:label]"`, the K highest scores of each batch row, highest first.

Labels come from the output's `label_filename` (one per line, in the model's folder), read once
at load. The request is checked before it runs (`check_classification`), so a bad K or an
output that cannot be ranked is a client error and never costs an execution.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from inferd.core.errors import InvalidArgument, Unavailable, Unsupported
from inferd.core.types import Array, RequestedOutput

if TYPE_CHECKING:  # request_checks calls `check_classification`
    from inferd.engine.request_checks import ModelTensor

PARAMETER: Final = "classification"
# What Triton ranks (it refuses BOOL, BYTES and BF16; FP16 is ranked here as well).
_RANKED: Final = frozenset(
    {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    | {"FP16", "FP32", "FP64"}
)
# Triton's bound on the elements of one row, against pathological CPU and memory use.
MAX_ELEMENTS: Final = 1_000_000
_SHARED_MEMORY: Final = "shared_memory_region"


def class_count(output: RequestedOutput) -> int:
    """The K an output asks for (0 = the raw tensor); raises on a K that is not a positive
    integer."""
    value = output.parameters.get(PARAMETER)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(
            f"invalid value for '{PARAMETER}' parameter of output '{output.name}': "
            f"expected a positive integer, got {value!r}"
        )
    return value


def check_classification(output: RequestedOutput, spec: ModelTensor) -> None:
    """Refuse what Triton refuses: a bad K, an unranked datatype, shared memory as well."""
    if not class_count(output):
        return
    if _SHARED_MEMORY in output.parameters:  # Triton's wording
        raise InvalidArgument(
            f"output '{output.name}': output can't set both 'shared_memory_region' and "
            "'classification'"
        )
    if spec.datatype not in _RANKED:
        raise InvalidArgument(
            f"output '{output.name}': class result not available for output due to "
            f"unsupported type '{spec.datatype}'"
        )


def classify_outputs(
    requested: list[RequestedOutput] | None,
    outputs: dict[str, Array],
    specs: dict[str, ModelTensor],
    batched: bool,
) -> None:
    """Replace, in place, each output asked for as a classification by its top-K strings."""
    for output in requested or ():
        if PARAMETER not in output.parameters:  # the common case: a raw tensor
            continue
        count = class_count(output)
        array = outputs.get(output.name)
        if count and array is not None:
            outputs[output.name] = top_k(array, count, specs[output.name].labels, batched)


def top_k(array: Array, count: int, labels: tuple[str, ...], batched: bool) -> Array:
    """The `count` highest elements of each row of `array` (the whole array when the model does
    not batch) as `"score:index[:label]"` bytes; shape [rows, min(count, per row)] or [k]."""
    rows = array.shape[0] if batched and array.ndim > 0 else 1
    flat = array.reshape(rows, -1)
    width = flat.shape[1]
    if width > MAX_ELEMENTS:
        raise InvalidArgument("classification output tensor too large")
    k = min(count, width)
    if k < width:  # only the top k need sorting
        part = np.argpartition(flat, width - k, axis=1)[:, width - k :]
    else:
        part = np.broadcast_to(np.arange(width), (rows, width))
    values = np.take_along_axis(flat, part, axis=1)
    # Highest value first, the lower index first among equals: ascending by (value, -index),
    # then reversed (negating the values would wrap unsigned integers).
    order = np.lexsort((-part, values), axis=1)[:, ::-1]
    indices = np.take_along_axis(part, order, axis=1).tolist()
    scores = np.take_along_axis(values, order, axis=1).tolist()
    # C++'s std::to_string, as Triton formats them: six decimals for floats.
    form = "{:f}:{}" if flat.dtype.kind == "f" else "{}:{}"
    text = np.empty((rows, k), dtype=np.object_)
    for row, (row_scores, row_indices) in enumerate(zip(scores, indices, strict=True)):
        text[row] = [
            _element(form.format(score, index), index, labels)
            for score, index in zip(row_scores, row_indices, strict=True)
        ]
    return text if batched and array.ndim > 0 else text[0]


def _element(head: str, index: int, labels: tuple[str, ...]) -> bytes:
    label = labels[index] if index < len(labels) else ""
    return (f"{head}:{label}" if label else head).encode()


def with_labels(
    model: str, outputs: dict[str, ModelTensor], config_outputs: Any, model_dir: Path | None
) -> dict[str, ModelTensor]:
    """`outputs` with the labels of each config output that names a `label_filename`."""
    labelled = dict(outputs)
    for tensor in config_outputs:
        if tensor.label_filename:
            labels = read_labels(model, tensor.name, tensor.label_filename, model_dir)
            labelled[tensor.name] = dataclasses.replace(outputs[tensor.name], labels=labels)
    return labelled


def read_labels(model: str, output: str, filename: str, model_dir: Path | None) -> tuple[str, ...]:
    """One label per line of `filename` in `model_dir` (an empty line: that index has none)."""
    if model_dir is None:
        raise Unsupported(
            f"model '{model}': the label file of output '{output}' can only be read from a "
            "model folder on this machine"
        )
    root = model_dir.resolve()
    path = (root / filename).resolve()
    if not path.is_relative_to(root):  # Triton refuses it too
        raise Unsupported(
            f"label file path '{filename}' for output '{output}' in model '{model}' is "
            "outside model directory"
        )
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise Unavailable(
            f"model '{model}': cannot read the label file '{filename}' of output "
            f"'{output}': {exc.strerror or exc}"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":  # a final newline ends the last line, it starts none
        lines.pop()
    return tuple(lines)
