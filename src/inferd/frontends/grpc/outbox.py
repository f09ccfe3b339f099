"""The bounded queue a `ModelStreamInfer` call's responses wait in for grpc to write them.

grpc writes one response of a call at a time, as fast as its client reads. `put` waits while
`limit` responses are waiting, so a client that reads slowly holds back the tasks of the
call's requests, and through them the models (a decoupled model's sends block once its
request's response channel is full, `core/responses.py`), instead of growing the server's
memory. `close`, the end of the call, never waits: it must get through to a full outbox.
`on_room` is called when a full outbox has room again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from inferd.core.running_loop import running_loop


class Outbox:
    """Responses in the order they were put; `get` gives None once closed and drained."""

    __slots__ = (
        "_closed",
        "_granted",
        "_items",
        "_limit",
        "_on_room",
        "_reader",
        "_writers",
    )

    def __init__(self, limit: int, on_room: Callable[[], None] | None = None) -> None:
        self._items: deque[Any] = deque()
        self._limit = limit
        self._closed = False
        self._reader: asyncio.Future[None] | None = None
        # Puts waiting for room (a cancelled one stays, skipped when its turn comes).
        self._writers: deque[asyncio.Future[None]] = deque()
        self._granted = 0  # puts woken for room that have not taken it yet
        self._on_room = on_room

    @property
    def full(self) -> bool:
        return len(self._items) >= self._limit

    async def put(self, item: Any) -> None:
        while len(self._items) >= self._limit:
            room = running_loop().create_future()
            self._writers.append(room)
            try:
                await room
            except asyncio.CancelledError:
                if not room.cancelled():  # woken, then cancelled: the room goes to the next
                    self._granted -= 1
                    self._wake_writer()
                raise
            self._granted -= 1
        self._items.append(item)
        self._wake_reader()

    def offer(self, item: Any) -> bool:
        """Put `item` if there is room and no `put` waits for it (they keep their turn, also
        once woken for room and not yet run); False, and nothing put, otherwise."""
        if len(self._items) >= self._limit or self._writers or self._granted:
            return False
        self._items.append(item)
        self._wake_reader()
        return True

    def close(self) -> None:
        self._closed = True
        self._wake_reader()

    async def get(self) -> Any | None:
        while not self._items:
            if self._closed:
                return None
            self._reader = running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        item = self._items.popleft()
        self._wake_writer()
        if self._on_room is not None and len(self._items) == self._limit - 1:
            self._on_room()
        return item

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _wake_writer(self) -> None:
        while self._writers:
            room = self._writers.popleft()
            if not room.done():
                room.set_result(None)
                self._granted += 1
                return
