"""How the dynamic batcher builds a batch's inputs and answers its requests: stacked along
the batch axis, or ragged (`ragged.py`)."""

from __future__ import annotations

from inferd.core.batch_io import BatchIO
from inferd.core.types import Array
from inferd.scheduling.batch import Batch, select_outputs, split_rows, stack_inputs, wanted_outputs
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
