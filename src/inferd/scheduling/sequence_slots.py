"""Who holds which batch slot: live sequences by id, each instance's slots, and the backlog.

A sequence takes a slot (instance, index) when it starts and keeps it until it ends or idles
out; new sequences go to the instance with the most free slots, and wait in the backlog, in
arrival order, when every slot is taken. Pure bookkeeping: no asyncio, no tensors.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from inferd.core.types import Array
from inferd.scheduling.batch import Pending

SequenceKey = int | str


class SequenceRecord:
    """One sequence: its queued steps, its slot (None while in the backlog) and its implicit
    state."""

    __slots__ = ("ended", "idle_timer", "index", "instance", "key", "running", "states", "steps")

    def __init__(self, key: SequenceKey) -> None:
        self.key = key
        self.instance: int | None = None
        self.index = 0
        self.steps: deque[SequenceStep] = deque()
        self.states: dict[str, Array] = {}
        self.running = False  # a step of it is executing now
        self.ended = False  # its END request has arrived: no more requests join it
        self.idle_timer: asyncio.TimerHandle | None = None

    def head_shapes(self, initial: dict[str, Array]) -> tuple[Any, ...]:
        """What must match for two sequences' next steps to share a batch: input names and
        shapes, and state shapes (a state may grow as the sequence goes)."""
        step = self.steps[0]
        inputs = tuple((name, array.shape) for name, array in step.request.inputs.items())
        states = self.states if not step.start else {}
        return inputs, tuple(states.get(name, array).shape for name, array in initial.items())

    def drained(self) -> bool:
        """Nothing queued or executing."""
        return not self.steps and not self.running


@dataclass(slots=True, eq=False)
class SequenceStep(Pending):
    """One request of a sequence, waiting for its answer; a step is always one batch row."""

    sequence: SequenceRecord
    start: bool
    end: bool


class SlotTable:
    def __init__(self, instances: int, slots_per_instance: int, max_backlog: int = 0) -> None:
        self.slots: list[list[SequenceRecord | None]] = [
            [None] * slots_per_instance for _ in range(instances)
        ]
        self._free = [slots_per_instance] * instances
        self.live: dict[
            SequenceKey, SequenceRecord
        ] = {}  # started and not ended (END not yet seen)
        self.backlog: deque[SequenceRecord] = deque()
        self._max_backlog = max_backlog  # 0: unlimited, as in Triton

    def backlog_full(self) -> bool:
        """A new sequence would have to wait and the backlog holds as many as allowed."""
        return (
            not any(self._free) and self._max_backlog > 0 and len(self.backlog) >= self._max_backlog
        )

    def open(self, key: SequenceKey) -> SequenceRecord:
        """A new live sequence, in a free slot or at the back of the backlog."""
        sequence = SequenceRecord(key)
        self.live[key] = sequence
        if not self.place(sequence):
            self.backlog.append(sequence)
        return sequence

    def close(self, sequence: SequenceRecord) -> None:
        """No more requests join `sequence` (its END arrived, or it idled out)."""
        sequence.ended = True
        if self.live.get(sequence.key) is sequence:
            del self.live[sequence.key]

    def release(self, sequence: SequenceRecord) -> SequenceRecord | None:
        """Free the slot of a closed, drained sequence; returns the backlogged sequence that
        takes it, if any."""
        sequence.states.clear()
        instance = sequence.instance
        if instance is None:
            return None
        sequence.instance = None
        self.slots[instance][sequence.index] = None
        self._free[instance] += 1
        if not self.backlog:
            return None
        waiting = self.backlog.popleft()
        self.place(waiting)
        return waiting

    def place(self, sequence: SequenceRecord) -> bool:
        """Put `sequence` in a free slot; False when every slot is taken."""
        # The instance with the most free slots, so sequences spread over instances.
        instance = max(range(len(self._free)), key=self._free.__getitem__)
        if not self._free[instance]:
            return False
        slots = self.slots[instance]
        index = slots.index(None)
        slots[index] = sequence
        self._free[instance] -= 1
        sequence.instance = instance
        sequence.index = index
        return True
