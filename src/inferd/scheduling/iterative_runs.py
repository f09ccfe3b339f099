"""The iterative scheduler's records (`iterative.py`): a request across its steps, and the
batches its steps run in."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from inferd.core.errors import InferdError
from inferd.core.types import Array, InferRequest
from inferd.scheduling.batch import Batch, stack_inputs
from inferd.scheduling.queue import Queued
from inferd.scheduling.sequence_settings import SequenceSettings
from inferd.scheduling.sequence_slots import SequenceRecord, SequenceStep
from inferd.scheduling.sequence_tensors import Row, SequenceBatches, batch_inputs


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

    def end(self, error: InferdError) -> None:
        """The server ends the request (its model is being unloaded): its caller gets `error`,
        and the model sees it cancelled, as for a client that went away, so that a step of it
        running now (which the unload waits for) may stop early."""
        if self.result.done():
            return
        self.result.set_exception(error)
        self.request.cancelled = True
        channel = self.request.responses
        if channel is not None:
            channel.end(error)

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
    handed back answers nothing yet (a decoupled model has sent its partial responses).

    A request's inputs are the same in each of its steps, and the running batch mostly the same
    requests from one step to the next: a step whose rows are the last step's runs the last
    step's batch again (`step_batch`), and the inputs stacked for it are used again (each
    request's own inputs are not stacked anew per step; the control inputs and states still
    are built per step)."""

    def __init__(self, settings: SequenceSettings, output_names: list[str]) -> None:
        super().__init__(settings, output_names)
        # The last batch of several rows, and its requests' inputs stacked
        self._stacked: tuple[Batch[SequenceStep], dict[str, Array]] | None = None

    def inputs(self, batch: Batch[SequenceStep]) -> dict[str, Array]:
        last = self._stacked
        if last is not None and last[0] is batch:
            stacked = last[1]
        else:
            stacked = stack_inputs([step.request.inputs for step in batch.calls])
            # One row's are its request's own arrays: nothing to keep.
            self._stacked = (batch, stacked) if len(batch.calls) > 1 else None
        return batch_inputs(batch.rows, self._settings, stacked=stacked)

    def one_by_one(self, batch: Batch[SequenceStep]) -> list[list[Row]]:
        return [[step] for step in batch.calls]

    def finish(self, call: SequenceStep, outputs: dict[str, Array]) -> dict[str, Array]:
        if call.rescheduled and not outputs:
            return outputs
        return super().finish(call, outputs)


def step_batch(steps: list[SequenceStep], last: Batch[SequenceStep] | None) -> Batch[SequenceStep]:
    """The batch of a step of `steps`: `last`, the batch of the instance's step before, again
    while its rows are the same steps (a request's next step is its step record renewed:
    `iterative._renew`) in the same order, so the same requests; else a new one."""
    if last is not None and _same(last.calls, steps):
        return last.again()
    return Batch(list(steps))


def _same(kept: list[SequenceStep], steps: list[SequenceStep]) -> bool:
    """The same step records, in the same order."""
    return len(kept) == len(steps) and all(a is b for a, b in zip(kept, steps, strict=True))
