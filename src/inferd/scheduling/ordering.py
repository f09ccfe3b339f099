"""`preserve_ordering`: hand results back in the order batches were formed.

Each batch takes a slot when it is formed; a finished batch delivers only once every earlier
slot has delivered, so with several instances responses still complete in request order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

Deliver = Callable[[], None]


class Slot:
    __slots__ = ("deliver",)

    def __init__(self) -> None:
        self.deliver: Deliver | None = None


class ResponseOrder:
    def __init__(self) -> None:
        self._slots: deque[Slot] = deque()

    def reserve(self) -> Slot:
        """Called in formation order, before the batch executes."""
        slot = Slot()
        self._slots.append(slot)
        return slot

    def complete(self, slot: Slot, deliver: Deliver) -> None:
        """The batch of `slot` finished; deliver it and every later batch already waiting."""
        slot.deliver = deliver
        slots = self._slots
        while slots:
            ready = slots[0].deliver
            if ready is None:
                return
            slots.popleft()
            ready()
