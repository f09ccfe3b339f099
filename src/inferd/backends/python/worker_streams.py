"""A decoupled model's worker loop: a reader thread takes the server's messages (batches to
run, cancellations) while user code runs, and every thread's sends share one locked pipe.

Each request of a batch gets a `PipeSink`, the worker's end of the request's response
channel: its responses go to the server as `Streamed` messages (their tensors in shared
memory, `stream_memory.py`), from whatever thread sends them and also after the batch's
`BatchDone`. While the server holds more of a request's responses than its reader has taken
(`PauseStream`), that request's sends wait here, and only its: the others' go on.

A sink is kept (`BatchReader.open_sinks`) until its request ends: the model's final response,
the server's `CancelRequest` (its client went away) or `EndStream` (the server failed it), or
the failure of the batch it ran in. The reader thread makes a batch's sinks as it reads the
batch, so a cancellation the server sends after the batch always finds its sink.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

from inferd.backends.python.protocol import (
    CallAnswer,
    CancelRequest,
    EndStream,
    ExecuteBatch,
    PauseStream,
    WireError,
)
from inferd.backends.python.stream_memory import StreamWriter
from inferd.core.errors import InferdError
from inferd.core.types import Array

logger = logging.getLogger("inferd.backends.python.worker")


class LockedPipe:
    """The worker's end of the pipe, sendable from any thread."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        with self._lock:
            self.conn.send(message)


class PipeSink:
    """A `ResponseSink` whose responses cross the pipe to the request's channel."""

    def __init__(self, key: int, writer: StreamWriter, open_sinks: dict[int, PipeSink]) -> None:
        self._key = key
        self._writer = writer
        self._open = open_sinks
        self._lock = threading.Lock()
        self._closed = False
        self._cancelled = False
        self._going = threading.Event()  # cleared while the server says its reader is behind
        self._going.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def end(self, cancelled: bool) -> None:
        """Take no more sends: the request's client went away (`cancelled`), or the request
        failed."""
        self._cancelled = self._cancelled or cancelled
        self._closed = True
        self._open.pop(self._key, None)
        self._going.set()  # a waiting send returns, dropped

    def pause(self, paused: bool) -> None:
        if paused:
            self._going.clear()
        else:
            self._going.set()

    def send(
        self,
        outputs: dict[str, Array] | None = None,
        error: InferdError | None = None,
        final: bool = False,
    ) -> bool:
        final = final or error is not None
        with self._lock:  # one order for sends from several threads
            self._going.wait()
            if self._closed or self._cancelled:
                return False
            if final:  # never reopens a sink that `end` closed meanwhile
                self._closed = True
                self._open.pop(self._key, None)
            wire_error = None if error is None else WireError.of(error)
            try:
                self._writer.send(self._key, outputs, wire_error, final)
            except OSError:  # the server is gone
                return False
        return True


class BatchReader:
    """Reads the server's messages in a thread: batches queue for the main loop,
    cancellations mark their request's sink at once."""

    def __init__(self, pipe: LockedPipe, writer: StreamWriter) -> None:
        self._pipe = pipe
        self._writer = writer
        self.open_sinks: dict[int, PipeSink] = {}
        self._batches: queue.SimpleQueue[tuple[ExecuteBatch, list[PipeSink]] | None] = (
            queue.SimpleQueue()
        )
        self.deliver: Callable[[CallAnswer], None] | None = None  # answers to the model's calls
        threading.Thread(target=self._read, name="server-reader", daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                message = self._pipe.conn.recv()
                if isinstance(message, CancelRequest | EndStream):
                    sink = self.open_sinks.get(message.key)
                    if sink is not None:
                        sink.end(cancelled=isinstance(message, CancelRequest))
                elif isinstance(message, PauseStream):
                    sink = self.open_sinks.get(message.key)
                    if sink is not None:
                        sink.pause(message.paused)
                elif isinstance(message, CallAnswer):
                    if self.deliver is not None:
                        self.deliver(message)
                else:
                    self._batches.put((message, self._sinks(message)))
        except (EOFError, OSError):
            pass
        finally:
            self._writer.stop()  # a send waiting for room would wait forever
            for sink in list(self.open_sinks.values()):
                sink.pause(False)  # nor would one waiting for its reader
            self._batches.put(None)

    def next_batch(self) -> tuple[ExecuteBatch, list[PipeSink]] | None:
        """The next batch to run with its requests' sinks, or None once the server closed the
        pipe."""
        return self._batches.get()

    def _sinks(self, message: ExecuteBatch) -> list[PipeSink]:
        """The batch's requests' sinks: an iterative request's next step sends on the sink of
        its earlier steps (the same key)."""
        sinks = []
        for key in message.streams or ():
            sink = self.open_sinks.get(key)
            if sink is None:
                sink = self.open_sinks[key] = PipeSink(key, self._writer, self.open_sinks)
            sinks.append(sink)
        return sinks
