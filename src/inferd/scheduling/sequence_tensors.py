"""A sequence batch as the backend sees it, and what each of its steps gets back.

The model's inputs are stacked over the rows (padding rows are zeros); each control input is
one value per row ([rows, 1] when the model batches, [1] when it does not); each implicit
state is the sequence's last state, or the initial state at its start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from inferd.core.errors import Internal
from inferd.core.types import Array
from inferd.scheduling.batch import (
    Batch,
    blank,
    select_outputs,
    split_rows,
    stack_inputs,
    wanted_outputs,
)
from inferd.scheduling.sequence_settings import CORRID, END, START, Control, SequenceSettings
from inferd.scheduling.sequence_slots import SequenceStep

Row = SequenceStep | None  # None: a padding row


class SequenceBatches:
    """The sequence batcher's `BatchKind`: one row per step, padding rows where the strategy
    leaves them, control inputs and implicit states added, state outputs kept."""

    def __init__(self, settings: SequenceSettings, output_names: list[str]) -> None:
        self._settings = settings
        self._output_names = output_names

    def inputs(self, batch: Batch[SequenceStep]) -> dict[str, Array]:
        return batch_inputs(batch.rows, self._settings)

    def output_names(self, batch: Batch[SequenceStep]) -> list[str]:
        return wanted_outputs(batch.calls, self._output_names) + list(self._settings.state_outputs)

    def split(
        self, batch: Batch[SequenceStep], outputs: dict[str, Array]
    ) -> list[dict[str, Array]]:
        return split_rows(batch, outputs) if self._settings.batched else [outputs]

    def one_by_one(self, batch: Batch[SequenceStep]) -> list[list[Row]]:
        """Each step as a batch of its own, so every other sequence's state advances as if the
        batch had run; in the direct strategy still in its slot's row (padding rows below
        it), so a model that keeps state per row sees it where it was."""
        direct = self._settings.strategy == "direct"
        return [
            [None] * index + [row] if direct else [row]
            for index, row in enumerate(batch.rows)
            if row is not None
        ]

    def finish(self, call: SequenceStep, outputs: dict[str, Array]) -> dict[str, Array]:
        return select_outputs(
            call.request, keep_states(call.sequence.states, outputs, self._settings)
        )


def batch_inputs(
    rows: Sequence[Row],
    settings: SequenceSettings,
    states: bool = True,
    stacked: Mapping[str, Array] | None = None,
) -> dict[str, Array]:
    """Model inputs, control inputs and (unless `states` is False) states for `rows` (at least
    one of them real); `stacked`: the rows' own inputs, already stacked."""
    if stacked is None:
        stacked = stack_inputs([row.request.inputs if row else None for row in rows])
    inputs = dict(stacked)  # a copy: the control inputs and states join the requests' own
    shape = (len(rows), 1) if settings.batched else (1,)
    for control in settings.controls:
        inputs[control.name] = _control_tensor(control, rows, shape)
    if states and settings.states:
        add_states(inputs, [row.sequence.states if row else None for row in rows], settings)
    return inputs


def add_states(
    inputs: dict[str, Array],
    held: Sequence[dict[str, Array] | None],
    settings: SequenceSettings,
) -> None:
    """Add the state inputs of rows whose sequences hold `held` (None: a padding row; a state
    a sequence does not hold yet is the initial one)."""
    for state in settings.states:
        name = state.input_name
        values = [None if h is None else h.get(name, state.initial) for h in held]
        if not settings.batched:
            inputs[name] = values[0] if values[0] is not None else state.initial
            continue
        # Padding rows get zeros shaped like a real row's state (states may grow over time).
        padding = blank(next(v for v in values if v is not None))
        inputs[name] = np.stack([padding if v is None else v for v in values])


def _control_tensor(control: Control, rows: Sequence[Row], shape: tuple[int, ...]) -> Array:
    if control.kind == CORRID:
        if control.dtype.kind == "O":
            ids = [_as_bytes(row.sequence.key) if row else b"" for row in rows]
            return np.array(ids, dtype=np.object_).reshape(shape)
        keys = [row.sequence.key if row else 0 for row in rows]
        return np.array(keys, dtype=control.dtype).reshape(shape)
    if control.kind == START:
        flags = [row is not None and row.start for row in rows]
    elif control.kind == END:
        flags = [row is not None and row.end for row in rows]
    else:  # READY
        flags = [row is not None for row in rows]
    values = [control.true if flag else control.false for flag in flags]
    return np.array(values, dtype=control.dtype).reshape(shape)


def _as_bytes(key: int | str) -> bytes:
    return key.encode() if isinstance(key, str) else str(key).encode()


def keep_states(
    held: dict[str, Array], answer: dict[str, Array], settings: SequenceSettings
) -> dict[str, Array]:
    """Store the state outputs of one row in `held` (its sequence's states, by input name);
    returns the other outputs."""
    for state in settings.states:
        value = answer.pop(state.output_name, None)
        if value is None:
            raise Internal(f"the model did not return its state output '{state.output_name}'")
        # A copy: a view would keep the whole batch's output alive as long as the sequence.
        held[state.input_name] = value[0].copy() if settings.batched else value
    return answer
