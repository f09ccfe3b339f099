"""An idle instance lent to one request whose caller runs it on its own thread.

A model calling another model from its own thread (BLS) waits for the answer anyway. When the
called model does not batch, nothing waits in its queue and one of its instances is idle,
that thread runs the batch itself (`RunsHere.execute_here`), as `DynamicBatcher.submit`
runs such a request in its caller's task: no thread hop to the instance and back, and the
caller has its answer without waiting for the event loop. The loop then reports the batch and
gives the instance back to its worker (`give_back`), which takes nothing from the queue
until then.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from inferd.core.types import Array, InferRequest
from inferd.instances.instance import RunsHere
from inferd.scheduling.batch import Answer, BatchRunner, Deliver, fail_undelivered
from inferd.scheduling.idle import Slot
from inferd.scheduling.queue import Queued


class Lender(Protocol):
    """What lent the slot, and takes it back (`IdleSlots`, or `Relay`)."""

    def give_back(self, slot: Slot) -> None: ...


class Lease:
    """Made on the event loop with its slot already lent; `run` on the caller's thread, then
    `give_back` on the loop (also when `run` never ran or raised)."""

    __slots__ = (
        "_batched",
        "_call",
        "_deliver",
        "_future",
        "_idle",
        "_instance",
        "_runner",
        "_slot",
    )

    def __init__(
        self,
        runner: BatchRunner[Queued],
        idle: Lender,
        slot: Slot,
        instance: RunsHere,
        future: asyncio.Future[dict[str, Array]],
        batched: bool,
    ) -> None:
        """`batched`: the model has a batch axis (a request's rows count along it)."""
        self._runner = runner
        self._idle = idle
        self._slot = slot
        self._instance = instance
        # Never awaited: the batch's delivery answers it, as it answers any request's.
        self._future = future
        self._batched = batched
        self._call: Queued | None = None
        self._deliver: Deliver | None = None

    def run(self, request: InferRequest) -> Answer:
        """Execute `request` (checked) on this thread: its outputs, or the `InferdError` it
        failed with."""
        now = time.monotonic_ns()
        request.timestamps.queued = now
        rows = request.batch_size() if self._batched else 1
        self._call = call = Queued(request, self._future, now, rows, queued=False)
        answers, self._deliver = self._runner.run_here(self._instance, [call])
        return answers[0]

    def give_back(self) -> None:
        """On the event loop: report the batch, answer its future, and give the instance back."""
        call, deliver = self._call, self._deliver
        try:
            if deliver is not None:
                deliver()
        except Exception as exc:  # a failing observer: the caller has its answer already
            assert call is not None  # a delivery comes with its call
            fail_undelivered(self._instance.name, [call], exc)
        finally:
            self._idle.give_back(self._slot)
        future = self._future
        if future.done():
            future.exception()  # retrieved: its caller has the answer already
