"""A worker's record of the server's cancellations, for a model that is not decoupled.

While a batch runs, the only messages the server sends are `CancelRequest`s naming its
requests, and the worker's main thread is busy in the model; so the model's first
`is_cancelled()` after one was sent reads it off the pipe. Nothing runs while no model asks,
so a batch costs what it did before. (A decoupled model's worker has a reader thread of its
own, `worker_streams.py`, which marks its requests' senders.)
"""

from __future__ import annotations

import threading
from multiprocessing.connection import Connection

from inferd.backends.python.protocol import CancelRequest, ExecuteBatch


class CancelInbox:
    """The cancellations of the running batch's requests, each named by its key."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # the model may ask from threads of its own
        self._running = False
        self._cancelled: set[int] = set()

    def open(self, message: ExecuteBatch) -> None:
        """The batch of `message` starts: its requests answer `cancelled` from here."""
        with self._lock:
            self._running = True
            self._cancelled.clear()
        for index, request in enumerate(message.requests):
            request.origin = _Flag(self, message.first_key + index)

    def close(self) -> None:
        """The batch ended: the pipe is the main loop's again (later questions read nothing)."""
        with self._lock:
            self._running = False

    def cancelled(self, key: int) -> bool:
        with self._lock:
            if self._running:
                while self._conn.poll(0):
                    message = self._conn.recv()
                    if isinstance(message, CancelRequest):
                        self._cancelled.add(message.key)
            return key in self._cancelled


class _Flag:
    """One request's `origin`: asks the inbox about its key."""

    __slots__ = ("_inbox", "_key")

    def __init__(self, inbox: CancelInbox, key: int) -> None:
        self._inbox = inbox
        self._key = key

    @property
    def cancelled(self) -> bool:
        return self._inbox.cancelled(self._key)
