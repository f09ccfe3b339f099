"""A sequence batch as the backend sees it, and its answer split back per request.

The model's inputs are stacked over the rows (padding rows are zeros); each control input is
one value per row ([rows, 1] when the model batches, [1] when it does not); each implicit
state is the sequence's last state, or the initial state at its start.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import numpy as np

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.core.errors import Internal
from inferd.core.types import Array
from inferd.scheduling.dynamic import Answer
from inferd.scheduling.sequence_settings import CORRID, END, START, Control, SequenceSettings
from inferd.scheduling.sequence_slots import Sequence, Step

Row = tuple[Sequence, Step] | None  # None: a padding row


def batch_inputs(rows: Seq[Row], settings: SequenceSettings) -> dict[str, Array]:
    """Model inputs, control inputs and states for `rows` (at least one of them real)."""
    real = next(row for row in rows if row is not None)
    first = real[1].request.inputs
    if len(rows) == 1:
        inputs = dict(first)
    else:
        padding = {name: _blank(array) for name, array in first.items()}
        inputs = {
            name: np.concatenate(
                [row[1].request.inputs[name] if row else padding[name] for row in rows]
            )
            for name in first
        }
    shape = (len(rows), 1) if settings.batched else (1,)
    for control in settings.controls:
        inputs[control.name] = _control_tensor(control, rows, shape)
    for state in settings.states:
        name = state.input_name
        values = [row[0].states.get(name, state.initial) if row else None for row in rows]
        if not settings.batched:
            inputs[name] = values[0] if values[0] is not None else state.initial
            continue
        # Padding rows get zeros shaped like a real row's state (states may grow over time).
        blank = _blank(next(v for v in values if v is not None))
        inputs[name] = np.stack([blank if v is None else v for v in values])
    return inputs


def _blank(array: Array) -> Array:
    if array.dtype.kind == "O":
        return np.full_like(array, b"")
    return np.zeros_like(array)


def _control_tensor(control: Control, rows: Seq[Row], shape: tuple[int, ...]) -> Array:
    if control.kind == CORRID:
        if control.dtype.kind == "O":
            ids = [_as_bytes(row[0].key) if row else b"" for row in rows]
            return np.array(ids, dtype=np.object_).reshape(shape)
        return np.array([row[0].key if row else 0 for row in rows], dtype=control.dtype).reshape(
            shape
        )
    if control.kind == START:
        flags = [row is not None and row[1].start for row in rows]
    elif control.kind == END:
        flags = [row is not None and row[1].end for row in rows]
    else:  # READY
        flags = [row is not None for row in rows]
    values = [control.true if flag else control.false for flag in flags]
    return np.array(values, dtype=control.dtype).reshape(shape)


def _as_bytes(key: int | str) -> bytes:
    return key.encode() if isinstance(key, str) else str(key).encode()


def batch_requests(rows: Seq[Row]) -> list[BatchRequest]:
    """The real rows, one request each, as the backend sees them."""
    return [
        BatchRequest(index, index + 1, row[1].request.id, row[1].request.parameters)
        for index, row in enumerate(rows)
        if row is not None
    ]


def split_outputs(outputs: BatchOutputs, rows: Seq[Row], batched: bool) -> list[Answer]:
    """Each real row's outputs (state outputs included), in row order."""
    indices = [index for index, row in enumerate(rows) if row is not None]
    if isinstance(outputs, list):
        if len(outputs) != len(indices):
            raise Internal(f"the backend answered {len(outputs)} of {len(indices)} requests")
        return list(outputs)
    if not batched:
        return [outputs]
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != len(rows):
            raise Internal(f"output '{name}' has {array.shape} for a batch of {len(rows)} rows")
    return [{name: array[i : i + 1] for name, array in outputs.items()} for i in indices]


def keep_states(
    sequence: Sequence, answer: dict[str, Array], settings: SequenceSettings
) -> dict[str, Array]:
    """Store the state outputs of one row in its sequence; returns the other outputs."""
    for state in settings.states:
        value = answer.pop(state.output_name, None)
        if value is None:
            raise Internal(f"the model did not return its state output '{state.output_name}'")
        # A copy: a view would keep the whole batch's output alive as long as the sequence.
        sequence.states[state.input_name] = value[0].copy() if settings.batched else value
    return answer
