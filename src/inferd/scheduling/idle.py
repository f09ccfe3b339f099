"""Instances waiting for work, and lending one to a request that can run at once.

With batching off, a request that reaches an empty queue while an
instance waits for work would only be handed to that instance's worker: a wake-up of the
worker's task, a trip through the queue, and a second wake-up to answer the caller. Instead
it borrows the idle instance and runs in its caller's task (`DynamicBatcher.submit`). The
instance's worker takes nothing from the queue until its instance is back.
"""

from __future__ import annotations

import asyncio

from inferd.core.running_loop import running_loop
from inferd.instances.instance import Instance


class Slot:
    """One place to run a batch: an instance, once per `pipeline_depth`, owned by a worker
    (or by `Relay`), that may be lent to one request."""

    __slots__ = ("instance", "lent", "returned")

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.lent = False
        # Its worker's wait for it, while lent: set when it comes back.
        self.returned: asyncio.Future[None] | None = None


class IdleSlots:
    """The slots whose workers wait for work, most recently idle last."""

    __slots__ = ("_idle",)

    def __init__(self) -> None:
        # A dict for its order: the last slot in is the last worker in line for the
        # forming lock, the one that would be the last to need it.
        self._idle: dict[Slot, None] = {}

    def add(self, slot: Slot) -> None:
        """Its worker waits for work."""
        self._idle[slot] = None

    def take(self, slot: Slot) -> None:
        """Its worker has a batch to run (never while the slot is lent: see `wait_back`)."""
        self._idle.pop(slot, None)

    async def wait_back(self, slot: Slot) -> None:
        """Until a lent slot is back: its worker takes nothing from the queue meanwhile, so
        what waits there stays withdrawable and counted as pending."""
        while slot.lent:
            slot.returned = running_loop().create_future()
            await slot.returned

    def lend(self) -> Slot | None:
        """An idle slot for a request to run on now, or None when every slot is busy."""
        if not self._idle:
            return None
        slot, _ = self._idle.popitem()
        slot.lent = True
        return slot

    def give_back(self, slot: Slot) -> None:
        slot.lent = False
        self._idle[slot] = None  # its worker still waits for work
        returned, slot.returned = slot.returned, None
        if returned is not None and not returned.done():
            returned.set_result(None)
