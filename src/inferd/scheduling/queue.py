"""The request queue of one model version: one deque per priority level, O(1) per request.

Each level holds its queue policy, a main deque and a deque of requests whose timeout expired
under `timeout_action: DELAY` (served after every on-time request of the same level, as in
Triton). A request that times out under REJECT fails from a timer; its entry is dropped when
batch formation reaches it, as are entries whose caller has gone away.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from inferd.core.errors import Unavailable
from inferd.core.running_loop import running_loop
from inferd.scheduling.batch import Pending
from inferd.scheduling.dynamic_settings import BatchingSettings, QueuePolicy


@dataclass(slots=True, eq=False)
class Queued(Pending):
    """A request in the queue: its shapes, priority level and queue timeout."""

    signature: tuple[Any, ...] = ()  # what must match for requests to share a batch
    level: int = 0
    deadline_ns: int = 0  # 0: no queue timeout
    delayed: bool = False
    queued: bool = True  # counted in its level's size: until its batch goes to an instance
    timer: asyncio.TimerHandle | None = None


class _Level:
    __slots__ = ("delayed", "policy", "queue", "size")

    def __init__(self, policy: QueuePolicy) -> None:
        self.policy = policy
        self.queue: deque[Queued] = deque()
        self.delayed: deque[Queued] = deque()
        self.size = 0  # requests in both deques whose callers still wait


class PriorityQueue:
    def __init__(self, settings: BatchingSettings) -> None:
        self._levels = [_Level(policy) for policy in settings.policies]

    def __len__(self) -> int:
        return sum(level.size for level in self._levels)

    def push(self, pending: Queued) -> None:
        """Queue a request; raises `Unavailable` when its level is at `max_queue_size`."""
        level = self._levels[pending.level]
        limit = level.policy.max_queue_size
        if limit and level.size >= limit:
            raise Unavailable(
                f"the queue of model '{pending.request.model_name}' is full "
                f"({limit} requests); retry later"
            )
        level.queue.append(pending)
        level.size += 1

    def enqueue(self, pending: Queued, timeout_ns: int) -> None:
        """`push` with the request's queue timeout (0: none): past its deadline it is served
        after the requests on time (DELAY) or fails from a timer (REJECT)."""
        self.push(pending)
        if timeout_ns:
            pending.deadline_ns = pending.enqueued_ns + timeout_ns
            if not self._levels[pending.level].policy.delay_on_timeout:
                loop = running_loop()
                pending.timer = loop.call_later(timeout_ns / 1e9, self.expire, pending)

    def pop(self, now_ns: int) -> Queued | None:
        """The next request by priority, out of the queue (one row, whatever its shapes)."""
        head: list[Queued] = []
        self.fill(head, 0, 1, now_ns)
        if not head:
            return None
        self.dispatched(head)
        if head[0].timer is not None:
            head[0].timer.cancel()
        return head[0]

    def policy(self, level: int) -> QueuePolicy:
        return self._levels[level].policy

    def expire(self, pending: Queued) -> None:
        """A REJECT timeout fired: fail the request now; its entry is dropped when reached."""
        if pending.future.done():
            return
        self.withdraw(pending)
        pending.fail(Unavailable("request timed out in the queue before it could be scheduled"))

    def withdraw(self, pending: Queued) -> None:
        """Its caller stopped waiting (timed out or cancelled): stop counting it at once, so
        that neither the pending count nor `max_queue_size` sees it; its entry is dropped
        when batch formation reaches it. A request already dispatched is left alone."""
        if pending.queued:
            self._levels[pending.level].size -= 1
            pending.queued = False

    def fill(
        self,
        batch: list[Queued],
        rows: int,
        max_rows: int,
        now_ns: int,
    ) -> tuple[int, bool]:
        """Move requests into `batch` in priority order while they fit and match its shapes.

        Returns the batch's rows and whether the next request is blocked (it cannot join, so
        waiting longer would not grow this batch).
        """
        for level in self._levels:
            delays = level.policy.delay_on_timeout
            for source in (level.queue, level.delayed):
                while source:
                    pending = source[0]
                    if pending.future.done():  # timed out (REJECT) or its caller went away
                        source.popleft()
                        self.withdraw(pending)  # a no-op if already withdrawn
                        continue
                    if (
                        delays
                        and not pending.delayed
                        and pending.deadline_ns
                        and pending.deadline_ns <= now_ns
                    ):
                        source.popleft()
                        pending.delayed = True
                        level.delayed.append(pending)
                        continue
                    if batch and (
                        pending.signature != batch[0].signature or rows + pending.rows > max_rows
                    ):
                        return rows, True
                    source.popleft()
                    batch.append(pending)  # still counted against max_queue_size, as in Triton
                    rows += pending.rows
        return rows, False

    def give_back(self, items: list[Queued]) -> None:
        """Return requests taken by `fill` to the front of their deques, in order."""
        for pending in reversed(items):
            level = self._levels[pending.level]
            (level.delayed if pending.delayed else level.queue).appendleft(pending)

    def dispatched(self, batch: list[Queued]) -> None:
        """The batch leaves the queue for an instance: its requests stop counting in it."""
        for pending in batch:
            self.withdraw(pending)
