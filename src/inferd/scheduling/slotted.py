"""What the sequence and the iterative batcher share: a slot table over the model's
instances, and one worker per instance that sleeps until a slot of its instance has work."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from inferd.instances.instance import Instance
from inferd.scheduling.batch import BatchCallback, BatchKind, BatchRunner, Wakeup
from inferd.scheduling.sequence_settings import SequenceSettings
from inferd.scheduling.sequence_slots import SequenceRecord, SequenceStep, SlotTable


class SlottedScheduler:
    """Instances with batch slots (`sequence_slots.py`), the implicit states' initial values,
    and a worker per instance (`_worker`, named `kind:instance`)."""

    def __init__(
        self,
        instances: Sequence[Instance],
        settings: SequenceSettings,
        kind: BatchKind[SequenceStep],
        on_batch: BatchCallback | None,
        name: str,
    ) -> None:
        self._instances = list(instances)
        self._settings = settings
        self._runner = BatchRunner(kind, on_batch)
        self._table = SlotTable(
            len(self._instances), settings.slots_per_instance, settings.max_backlog
        )
        self._initial = {s.input_name: s.initial for s in settings.states}
        self._wakeups = [Wakeup() for _ in self._instances]
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._name = name

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._worker(index), name=f"{self._name}:{instance.name}")
            for index, instance in enumerate(self._instances)
        ]

    async def _worker(self, index: int) -> None:
        raise NotImplementedError

    def _release(self, sequence: SequenceRecord) -> None:
        """Free the slot of a closed sequence; wake the instance its successor takes it on."""
        successor = self._table.release(sequence)
        if successor is not None and successor.instance is not None:
            self._wakeups[successor.instance].wake()
