"""How the dynamic batcher builds a batch's inputs and answers its requests: stacked along
the batch axis, or ragged (`ragged.py`); and its runner for stacked batches, which runs a batch
of one request (every batch, with batching off) without forming one."""

from __future__ import annotations

import functools
import time

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.core.batch_io import BatchIO
from inferd.core.errors import Internal
from inferd.core.types import Array, Timestamps
from inferd.instances.instance import RunsHere
from inferd.scheduling.adaptive import SloController
from inferd.scheduling.batch import (
    Answer,
    Batch,
    BatchCallback,
    BatchRunner,
    Deliver,
    select_outputs,
    split_rows,
    stack_inputs,
    wanted_outputs,
)
from inferd.scheduling.queue import Queued
from inferd.scheduling.ragged import ragged_inputs, ragged_split


class StackedKind:
    """The dynamic batcher's `BatchKind`: requests stacked along the batch axis, each
    answered from its own rows."""

    def __init__(self, output_names: list[str]) -> None:
        self._output_names = output_names

    def inputs(self, batch: Batch[Queued]) -> dict[str, Array]:
        return stack_inputs([queued.request.inputs for queued in batch.calls])

    def output_names(self, batch: Batch[Queued]) -> list[str]:
        return wanted_outputs(batch.calls, self._output_names)

    def split(self, batch: Batch[Queued], outputs: dict[str, Array]) -> list[dict[str, Array]]:
        # One request has the batch to itself, batch axis or none.
        return [outputs] if len(batch.calls) == 1 else split_rows(batch, outputs)

    def one_by_one(self, batch: Batch[Queued]) -> list[list[Queued | None]]:
        return [[queued] for queued in batch.calls]

    def finish(self, call: Queued, outputs: dict[str, Array]) -> dict[str, Array]:
        return select_outputs(call.request, outputs)


class RaggedKind(StackedKind):
    """`StackedKind` for a model with ragged inputs, batch inputs or batch outputs."""

    def __init__(self, output_names: list[str], io: BatchIO) -> None:
        super().__init__(output_names)
        self._io = io

    def inputs(self, batch: Batch[Queued]) -> dict[str, Array]:
        return ragged_inputs(self._io, batch)

    def split(self, batch: Batch[Queued], outputs: dict[str, Array]) -> list[dict[str, Array]]:
        return ragged_split(self._io, batch, outputs)


class StackedRunner(BatchRunner[Queued]):
    """The `BatchRunner` of `StackedKind`. A batch of one request run here (`run_here`) hands
    the instance the request's own inputs and the request its outputs, as `StackedKind` does
    for such a batch, with the same reports and errors, and no `Batch` to form, stack or split:
    that is each request's path with batching off."""

    def __init__(
        self, output_names: list[str], on_batch: BatchCallback | None, slo: SloController | None
    ) -> None:
        super().__init__(StackedKind(output_names), on_batch, slo)
        self._output_names = output_names

    def run_here(
        self, instance: RunsHere, rows: list[Queued | None]
    ) -> tuple[list[Answer], Deliver]:
        if len(rows) != 1 or (call := rows[0]) is None:
            return super().run_here(instance, rows)
        calls = [call]
        request = call.request
        part = BatchRequest(
            0, call.rows, request.id, request.parameters, request.responses, request
        )
        compute = Timestamps(compute_start=time.monotonic_ns())
        try:
            result = instance.execute_here(
                request.inputs, wanted_outputs(calls, self._output_names), [part]
            )
            answers = [self._answer(call, part, _alone(result.outputs))]
        except Exception as exc:  # a refused input as well: no one else to run it without
            return self._failed_here(calls, exc)
        # Its caller has the answer now, before the loop delivers it.
        compute.compute_end = time.monotonic_ns()
        deliver = functools.partial(
            self._deliver, calls, call.rows, 0, answers, compute, result, instance.name
        )
        return answers, deliver


def _alone(outputs: BatchOutputs) -> Answer:
    """A one-request batch's outputs as its request's share (`BatchRunner._answers`)."""
    if isinstance(outputs, list):
        if len(outputs) != 1:
            raise Internal(f"the backend answered {len(outputs)} of 1 requests")
        return outputs[0]
    return outputs
