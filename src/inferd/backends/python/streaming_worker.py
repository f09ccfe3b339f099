"""The worker process of a decoupled Python model, seen from the server.

A reader thread of its own takes every message of the worker, so that the model's responses
reach their requests whenever they are sent, also after `execute` returned; the requests it
was still answering fail when it dies.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import queue
import socket
import threading
from collections.abc import Mapping, Sequence

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.backends.python.isolated_worker import Worker, WorkerLost
from inferd.backends.python.protocol import CancelRequest, Streamed, WorkerSetup
from inferd.backends.python.stream_memory import StreamReader
from inferd.core.calls import ModelCalls
from inferd.core.errors import Internal, Unavailable
from inferd.core.responses import ResponseChannel
from inferd.core.types import Array


class StreamingWorker(Worker):
    """A decoupled model's worker: a reader thread takes every message, handing each streamed
    response to its request's channel at once and the rest to the waiting `run`."""

    def __init__(self, setup: WorkerSetup, threads: int, calls: ModelCalls | None) -> None:
        self._replies: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._channels: dict[int, ResponseChannel] = {}
        self._keys = itertools.count()
        self._reader: threading.Thread | None = None
        super().__init__(setup, threads, calls)
        self._streamed = StreamReader(self.streamed)

    def run(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        timeout: float | None,
        streams: list[int] | None = None,
    ) -> BatchOutputs:
        keys = []
        for request in requests:
            channel = request.responses
            if channel is None:
                raise Internal("a request for a decoupled model came without its channel")
            key = next(self._keys)
            self._channels[key] = channel
            channel.on_cancel(functools.partial(self._cancel, key))
            keys.append(key)
        # The worker names each request's channel by its key.
        return super().run(inputs, output_names, requests, timeout, keys)

    def stop(self) -> None:
        # The reader thread's pending recv keeps the socket open past `close`, so the worker
        # would never see the end of the pipe: shut its sending side down first.
        with contextlib.suppress(OSError):
            ours = socket.fromfd(self._conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
            ours.shutdown(socket.SHUT_WR)
            ours.close()
        super().stop()

    def _cancel(self, key: int) -> None:
        if self._channels.pop(key, None) is not None:
            with contextlib.suppress(WorkerLost):  # its requests fail as it is replaced
                self._send(CancelRequest(key))

    def _receive(
        self, timeout: float | None, requests: Sequence[BatchRequest] = (), first_key: int = 0
    ) -> object:
        # A decoupled request's cancellation reaches the worker through its channel (`_cancel`).
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, name="worker-reader", daemon=True)
            self._reader.start()
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise WorkerLost(f"timed out after {timeout:g} s") from None
        if reply is None:
            raise WorkerLost(self._crashed())
        return reply

    def _read(self) -> None:
        try:
            while True:
                message = self._conn.recv()
                if isinstance(message, Streamed):
                    self._deliver(message)
                elif not self._took(message):
                    self._replies.put(message)
        except (EOFError, OSError):
            pass
        finally:
            self._replies.put(None)
            lost = Unavailable("the worker of this decoupled model stopped before answering")
            for channel in list(self._channels.values()):
                channel.send(error=lost)
            self._channels.clear()

    def _deliver(self, message: Streamed) -> None:
        # Copied out first, whatever became of the request: its region is free from here.
        outputs = self._streamed.outputs(message)
        channel = (
            self._channels.pop(message.key, None)
            if message.final
            else self._channels.get(message.key)
        )
        if channel is not None:
            error = None if message.error is None else message.error.error()
            channel.send(outputs, error, message.final)
