"""`preserve_ordering`: hand results back in the order batches were formed.

Each batch takes a turn when it is formed; a finished batch delivers only once every earlier
turn has delivered, so with several instances responses still complete in request order.
"""

from __future__ import annotations

from collections import deque

from inferd.scheduling.batch import Deliver


class Turn:
    """A batch's place in the delivery order, and its delivery once it finished."""

    __slots__ = ("deliver",)

    def __init__(self) -> None:
        self.deliver: Deliver | None = None


class ResponseOrder:
    def __init__(self) -> None:
        self._turns: deque[Turn] = deque()

    def reserve(self) -> Turn:
        """Called in formation order, before the batch executes."""
        turn = Turn()
        self._turns.append(turn)
        return turn

    def complete(self, turn: Turn, deliver: Deliver) -> None:
        """The batch of `turn` finished; deliver it and every later batch already waiting."""
        turn.deliver = deliver
        turns = self._turns
        while turns:
            ready = turns[0].deliver
            if ready is None:
                return
            turns.popleft()
            ready()
