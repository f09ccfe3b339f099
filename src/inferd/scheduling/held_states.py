"""Implicit state kept where a sequence's instance runs (a cluster host) instead of in the
scheduler, so that it does not travel with every batch.

The sequence batcher feeds an instance that holds its sequences' states itself (`HoldsStates`)
batches without any state: besides the model's and the control inputs, one small tensor
(`STATE_ROWS`) says for each row which slot of the instance it continues, and whether it starts
or ends its sequence (a padding row's slot is -1). The instance's side (`HostedStates`) starts
a slot's state from the initial one at its START, feeds the state inputs, keeps the state
outputs and answers only the other outputs. It drops a slot's state once its END step has run,
or when the scheduler releases the slot otherwise (`HoldsStates.forget_state`: the sequence
idled out, or its last step failed). A continuing row whose state the instance does not hold
(its process restarted) fails as a lost sequence: it is never fed the initial state.

A model whose state may change shape (dims with -1) keeps it in the scheduler (`can_hold`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from inferd.backends.base import BatchOutputs
from inferd.core.errors import InferdError, InstanceLost
from inferd.core.types import Array
from inferd.instances.instance import Instance
from inferd.scheduling.batch import Batch, select_outputs, wanted_outputs
from inferd.scheduling.rate_limiter import Gate
from inferd.scheduling.sequence_settings import SequenceSettings
from inferd.scheduling.sequence_slots import SequenceStep
from inferd.scheduling.sequence_tensors import (
    Row,
    SequenceBatches,
    add_states,
    batch_inputs,
    keep_states,
)

# The input that carries the rows' slots and flags: [rows, 2] INT64 of [slot, flags].
STATE_ROWS = "inferd.sequence_state_rows"
START, END = 1, 2  # the flags' bits


@runtime_checkable
class HoldsStates(Protocol):
    """An instance that may keep its sequences' implicit states (`holds_states` says whether
    it does, for its model: see `can_hold`)."""

    holds_states: bool

    def forget_state(self, slot: int) -> None:
        """Drop what the instance holds for `slot` (before any later batch runs)."""


def can_hold(settings: SequenceSettings, input_names: Iterable[str]) -> bool:
    """Whether an instance may keep these sequences' states: the model has some, none of
    them may change shape (the scheduler, which batches together only sequences whose states
    have the same shapes, keeps those), and none of the model's inputs (`input_names`) has the
    name of the rows' tensor."""
    return (
        bool(settings.states)
        and not any(state.grows for state in settings.states)
        and STATE_ROWS not in input_names
    )


def state_holder(instance: Instance) -> HoldsStates | None:
    """The instance (behind its rate limiter's gate, if any) when it keeps its sequences'
    states itself."""
    inner = instance.inner if isinstance(instance, Gate) else instance
    return inner if isinstance(inner, HoldsStates) and inner.holds_states else None


class HeldStateBatches(SequenceBatches):
    """The sequence batcher's batches for an instance that holds the states: no state goes in
    or comes back, the rows' slots and flags go instead."""

    def inputs(self, batch: Batch[SequenceStep]) -> dict[str, Array]:
        inputs = batch_inputs(batch.rows, self._settings, states=False)
        inputs[STATE_ROWS] = state_rows(batch.rows)
        return inputs

    def output_names(self, batch: Batch[SequenceStep]) -> list[str]:
        return wanted_outputs(batch.calls, self._output_names)

    def finish(self, call: SequenceStep, outputs: dict[str, Array]) -> dict[str, Array]:
        return select_outputs(call.request, outputs)


def state_rows(rows: Iterable[Row]) -> Array:
    return np.array(
        [
            [-1, 0] if row is None else [row.sequence.index, START * row.start + END * row.end]
            for row in rows
        ],
        np.int64,
    )


class HostedStates:
    """The holding instance's side: each slot's states, fed to its rows and kept from their
    answers."""

    def __init__(self, settings: SequenceSettings) -> None:
        self._settings = settings
        self._slots: dict[int, dict[str, Array]] = {}  # slot -> state input name -> value

    @property
    def state_outputs(self) -> tuple[str, ...]:
        return self._settings.state_outputs

    def __len__(self) -> int:
        """The sequences whose states are held."""
        return len(self._slots)

    def held_bytes(self) -> int:
        return sum(value.nbytes for held in self._slots.values() for value in held.values())

    def forget(self, slots: Iterable[int]) -> None:
        for slot in slots:
            self._slots.pop(slot, None)

    def feed(self, inputs: dict[str, Array]) -> list[list[int]] | None:
        """Replace the rows' tensor in `inputs` by the state inputs; the rows ([slot, flags]
        each), or None for a batch without them. Raises `InstanceLost` for a continuing row
        whose state is not here."""
        rows_tensor = inputs.pop(STATE_ROWS, None)
        if rows_tensor is None:
            return None
        rows: list[list[int]] = rows_tensor.tolist()
        held = self._slots
        lost = [s for s, flags in rows if s >= 0 and not flags & START and s not in held]
        if lost:
            raise InstanceLost(f"the instance holds no state for the sequences in slots {lost}")
        for slot, flags in rows:
            if flags & START:
                self._slots[slot] = {}  # a (re)start begins from the initial state
        add_states(
            inputs, [self._slots[slot] if slot >= 0 else None for slot, _ in rows], self._settings
        )
        return rows

    def keep(self, rows: list[list[int]], outputs: BatchOutputs) -> BatchOutputs:
        """Keep the rows' state outputs (dropping the state of rows that end their sequence);
        the outputs without them."""
        real = [(index, slot, flags) for index, (slot, flags) in enumerate(rows) if slot >= 0]
        if isinstance(outputs, list):  # one answer per request: a row each
            for (_, slot, flags), answer in zip(real, outputs, strict=True):
                if not isinstance(answer, InferdError):
                    self._keep(slot, flags, answer)
            return outputs
        batched = self._settings.batched
        names = [name for name in self._settings.state_outputs if name in outputs]
        for index, slot, flags in real:
            row = {n: outputs[n][index : index + 1] if batched else outputs[n] for n in names}
            self._keep(slot, flags, row)
        return {name: value for name, value in outputs.items() if name not in names}

    def _keep(self, slot: int, flags: int, answer: dict[str, Array]) -> None:
        if flags & END:
            keep_states({}, answer, self._settings)  # checks the model returned them
            self._slots.pop(slot, None)
        else:
            keep_states(self._slots[slot], answer, self._settings)
