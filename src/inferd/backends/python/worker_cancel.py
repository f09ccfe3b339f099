"""What a worker process reads off its pipe, for a model that is not decoupled.

While a batch runs, the server sends only `CancelRequest`s naming its requests (and answers to
the model's BLS calls), and the worker's main thread is busy in the model; so the model's first
`is_cancelled()` after one was sent reads it off the pipe, and a model waiting for its calls'
answers has them read by a pump thread (`worker_calls.py`). Nothing runs while no model asks,
so a batch costs what it did before. Whoever reads holds one lock and hands each message where
it belongs: a cancellation to this record, an answer to the calls, a batch to the main loop.
(A decoupled model's worker has a reader thread of its own, `worker_streams.py`.)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection

from inferd.backends.python.protocol import CallAnswer, CancelRequest, ExecuteBatch

_IDLE_POLL_S = 0.05  # how long the main loop holds the pipe at a time while it waits


class CancelInbox:
    """The cancellations of the running batch's requests, each named by its key; and the
    reader of the worker's pipe."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # the model may ask from threads of its own
        self._running = False
        self._cancelled: set[int] = set()
        self._batches: deque[ExecuteBatch | None] = deque()  # read by another than the main loop
        self.deliver: Callable[[CallAnswer], None] | None = None

    def open(self, message: ExecuteBatch) -> None:
        """The batch of `message` starts: its requests answer `cancelled` from here."""
        with self._lock:
            self._running = True
            self._cancelled.clear()
        for index, request in enumerate(message.requests):
            request.origin = _Flag(self, message.first_key + index)

    def close(self) -> None:
        """The batch ended: cancellations read from here on are late, and dropped."""
        with self._lock:
            self._running = False

    def cancelled(self, key: int) -> bool:
        with self._lock:
            if self._running:
                self._read(0)
            return key in self._cancelled

    def pump(self, timeout: float) -> None:
        """Read what arrives within `timeout` s (for calls waiting for their answers)."""
        with self._lock:
            self._read(timeout)

    def next_batch(self) -> ExecuteBatch | None:
        """The next batch to run (None once the server closed the pipe)."""
        while True:
            with self._lock:
                if self._batches:
                    return self._batches.popleft()
                self._read(_IDLE_POLL_S)

    def _read(self, timeout: float) -> None:
        try:
            if not self._conn.poll(timeout):
                return
            while True:
                self._dispatch(self._conn.recv())
                if not self._conn.poll(0):
                    return
        except (EOFError, OSError):
            self._batches.append(None)

    def _dispatch(self, message: object) -> None:
        if isinstance(message, CancelRequest):
            if self._running:
                self._cancelled.add(message.key)
        elif isinstance(message, CallAnswer):
            if self.deliver is not None:
                self.deliver(message)
        else:
            assert isinstance(message, ExecuteBatch)
            self._batches.append(message)


class _Flag:
    """One request's `origin`: asks the inbox about its key."""

    __slots__ = ("_inbox", "_key")

    def __init__(self, inbox: CancelInbox, key: int) -> None:
        self._inbox = inbox
        self._key = key

    @property
    def cancelled(self) -> bool:
        return self._inbox.cancelled(self._key)
