"""The iterative scheduler's records (`iterative.py`): a request across its steps, and the
batches its steps run in."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from inferd.core.types import Array, InferRequest
from inferd.scheduling.batch import Batch
from inferd.scheduling.queue import Queued
from inferd.scheduling.sequence_slots import SequenceRecord, SequenceStep
from inferd.scheduling.sequence_tensors import Row, SequenceBatches


@dataclass(slots=True, eq=False)
class IterativeRun:
    """One iterative request across its steps: the answer its caller awaits."""

    request: InferRequest
    sequence: SequenceRecord
    result: asyncio.Future[dict[str, Array]]
    queued: Queued | None = None  # its entry while it waits in the backlog for a slot
    # Its inputs' names and shapes, the same in each of its steps: with no implicit state,
    # what must match for two requests' steps to share a batch.
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def abandoned(self) -> bool:
        """The caller went away (or the request already failed): run no more steps of it."""
        channel = self.request.responses
        return self.result.done() or (channel is not None and channel.cancelled)

    def behind(self) -> bool:
        """Its reader has not caught up with its responses: its next step waits."""
        channel = self.request.responses
        return channel is not None and channel.behind

    def answered(self) -> bool:
        """A decoupled model sent the final response: a step handed back has nothing to do."""
        channel = self.request.responses
        return channel is not None and channel.closed


class IterativeSteps(SequenceBatches):
    """The sequence batcher's batches, one row per running request (no padding rows); a step
    handed back answers nothing yet (a decoupled model has sent its partial responses)."""

    def one_by_one(self, batch: Batch[SequenceStep]) -> list[list[Row]]:
        return [[step] for step in batch.calls]

    def finish(self, call: SequenceStep, outputs: dict[str, Array]) -> dict[str, Array]:
        if call.rescheduled and not outputs:
            return outputs
        return super().finish(call, outputs)
