"""The worker process of a decoupled Python model, seen from the server.

A reader thread of its own takes every message of the worker, so that the model's responses
reach their requests whenever they are sent, also after `execute` returned; the requests it
was still answering fail when it dies.

One worker's pipe carries the responses of all its requests, so its reader never waits for
one request's reader: a response to a channel that is `behind` (`MAX_UNREAD` unread) waits in
that request's queue here, and the worker is told to hold that request's further sends
(`PauseStream`) until its reader catches up (the channel's `on_room`), when the queue moves on
into the channel. Only what was already on its way when the worker was told waits here; should
that exceed `OVERFLOW_LIMIT` bytes across the worker's requests, the reader stops reading the
pipe until their readers take some. An iterative request keeps its key (and its queue) across
its steps.

A request's entry here (and its sink in the worker) goes when its stream ends: at the model's
final response; at a failure of the batch it runs in (`run` raises; the worker ends the
batch's sinks itself); and when the stream's reader leaves it (the channel's `on_end`): its
client went away (the worker is told, `CancelRequest`), or the server ended the stream itself,
say an iterative request that idled out between two steps or a model being unloaded (the
worker is told, `EndStream`). Nothing is told before the batch that names the request reached
the worker, which would not know its key yet: each batch, once sent, looks for the streams
that ended before (`_end_ended`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import queue
import socket
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.backends.python.isolated_worker import Worker, WorkerLost
from inferd.backends.python.protocol import (
    CancelRequest,
    EndStream,
    PauseStream,
    Streamed,
    WorkerSetup,
)
from inferd.backends.python.stream_memory import StreamReader
from inferd.core.calls import ModelCalls
from inferd.core.errors import InferdError, Internal, Unavailable
from inferd.core.responses import ResponseChannel
from inferd.core.types import Array

# Bytes of responses waiting here beyond their channels' bound, per worker, beyond which its
# reader stops reading the pipe (so the worker's sends wait as they would for a full pipe).
OVERFLOW_LIMIT = 64 << 20

_Response = tuple[dict[str, Array] | None, InferdError | None, bool, int]  # ..., final, bytes


@dataclass(slots=True, eq=False)
class _Stream:
    """One request's channel as the worker's responses for it arrive."""

    key: int
    channel: ResponseChannel
    waiting: deque[_Response] = field(default_factory=deque)  # beyond the channel's bound
    paused: bool = False  # the worker was told to hold its sends
    sent: bool = False  # a batch naming it went to the worker: it can be told of its end


class StreamingWorker(Worker):
    """A decoupled model's worker: a reader thread takes every message, handing each streamed
    response to its request's channel at once and the rest to the waiting `run`."""

    def __init__(self, setup: WorkerSetup, threads: int, calls: ModelCalls | None) -> None:
        self._replies: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._streams: dict[int, _Stream] = {}
        self._by_channel: dict[ResponseChannel, _Stream] = {}
        self._keys = itertools.count()
        self._reader: threading.Thread | None = None
        # Guards every stream's `waiting` and `paused` (the reader thread and the event loop).
        self._overflow = threading.Condition()
        self._overflow_bytes = 0
        self._stopping = False
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
        # The worker names each request's channel by its key.
        opened = [self._open(request) for request in requests]
        try:
            return super().run(inputs, output_names, requests, timeout, [s.key for s in opened])
        except BaseException:  # the failure ends their streams (`ResponseChannel.execution_done`)
            for stream in opened:
                self._forget(stream)
            raise

    def _open(self, request: BatchRequest) -> _Stream:
        channel = request.responses
        if channel is None:
            raise Internal("a request for a decoupled model came without its channel")
        stream = self._by_channel.get(channel)
        if stream is None:  # else a step of an iterative request that ran before
            stream = _Stream(next(self._keys), channel)
            self._streams[stream.key] = self._by_channel[channel] = stream
            channel.on_end(functools.partial(self._reader_left, stream))
            channel.on_room(functools.partial(self._drain, stream))
        return stream

    def _forget(self, stream: _Stream) -> bool:
        """No more responses for `stream` will be taken; False if already so."""
        self._by_channel.pop(stream.channel, None)
        return self._streams.pop(stream.key, None) is not None

    def stop(self) -> None:
        with self._overflow:
            self._stopping = True
            self._overflow.notify_all()
        # The reader thread's pending recv keeps the socket open past `close`, so the worker
        # would never see the end of the pipe: shut its sending side down first.
        with contextlib.suppress(OSError):
            ours = socket.fromfd(self._conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
            ours.shutdown(socket.SHUT_WR)
            ours.close()
        super().stop()

    def _reader_left(self, stream: _Stream) -> None:
        """Its reader left the stream, cancelled or ended (on the event loop)."""
        if stream.sent:  # else `_end_ended`, once its batch was sent
            self._end(stream)

    def _end_ended(self) -> None:
        """Once a batch was sent (every stream here then was): end the streams that ended
        without the model's final response, the server's doing or a cancellation before the
        worker knew the request."""
        for stream in list(self._streams.values()):
            stream.sent = True  # before the look: else a cancellation now might go untold
            if stream.channel.cancelled or stream.channel.closed:
                self._end(stream)

    def _end(self, stream: _Stream) -> None:
        """Forget `stream`, and have the worker take no more of its sends."""
        with self._overflow:
            self._drop(stream)
        if self._forget(stream):
            cancelled = stream.channel.cancelled
            message = CancelRequest(stream.key) if cancelled else EndStream(stream.key)
            with contextlib.suppress(WorkerLost):  # its requests fail as it is replaced
                self._send(message)

    def _receive(
        self, timeout: float | None, requests: Sequence[BatchRequest] = (), first_key: int = 0
    ) -> object:
        # A decoupled request's cancellation reaches the worker through its channel
        # (`_reader_left`), not the base class's polling; once the batch was sent (this is
        # called then), so do the ends that came before.
        if requests:
            self._end_ended()
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
                    if self._overflow_bytes > OVERFLOW_LIMIT:
                        self._wait_for_readers()
                elif not self._took(message):
                    self._replies.put(message)
        except (EOFError, OSError):
            pass
        finally:
            self._replies.put(None)
            lost = Unavailable("the worker of this decoupled model stopped before answering")
            for stream in list(self._streams.values()):
                self._forget(stream)
                self._forward(stream, None, lost, True)

    def _deliver(self, message: Streamed) -> None:
        # Copied out first, whatever became of the request: its region is free from here.
        outputs = self._streamed.outputs(message)
        stream = self._streams.get(message.key)
        if stream is None:
            return
        if message.final:
            self._forget(stream)
        error = None if message.error is None else message.error.error()
        self._forward(stream, outputs, error, message.final)

    def _forward(
        self,
        stream: _Stream,
        outputs: dict[str, Array] | None,
        error: InferdError | None,
        final: bool,
    ) -> None:
        """Into the channel, or its queue here while the channel is behind (never waits)."""
        channel = stream.channel
        if not stream.waiting and not channel.behind:
            # Nothing else fills it (the loop's failure of an execution ends it): room stays.
            channel.send(outputs, error, final)
            return
        if channel.closed or channel.cancelled:
            return  # dropped, as its send would: nothing more reaches its reader
        nbytes = _size(outputs)
        with self._overflow:
            if not stream.waiting and not channel.behind:  # its reader caught up meanwhile
                channel.send(outputs, error, final)
                return
            stream.waiting.append((outputs, error, final, nbytes))
            self._overflow_bytes += nbytes
            if not stream.paused and not final:
                stream.paused = True
                self._tell(stream)

    def _drain(self, stream: _Stream) -> None:
        """Its reader took one (on the event loop): move its queue on into the channel."""
        with self._overflow:
            channel = stream.channel
            while stream.waiting and not channel.behind:
                outputs, error, final, nbytes = stream.waiting[0]
                sent = channel.send(outputs, error, final)
                # Taken off after it is in the channel: till then the reader queues behind it.
                stream.waiting.popleft()
                self._overflow_bytes -= nbytes
                if not sent:  # ended, or cancelled
                    self._drop(stream)
            if not stream.waiting and stream.paused:
                stream.paused = False
                self._tell(stream)
            self._overflow.notify_all()

    def _drop(self, stream: _Stream) -> None:
        """Forget what waits for `stream` (under `_overflow`)."""
        self._overflow_bytes -= sum(response[3] for response in stream.waiting)
        stream.waiting.clear()
        self._overflow.notify_all()

    def _tell(self, stream: _Stream) -> None:
        """Whether the worker is to hold the request's sends (under `_overflow`, so that the
        worker sees them in the order they changed)."""
        with contextlib.suppress(WorkerLost):  # its requests fail as it is replaced
            self._send(PauseStream(stream.key, stream.paused))

    def _wait_for_readers(self) -> None:
        with self._overflow:
            while self._overflow_bytes > OVERFLOW_LIMIT and not self._stopping:
                self._overflow.wait(1.0)


def _size(outputs: dict[str, Array] | None) -> int:
    """Bytes a response holds (a BYTES tensor's elements counted by their length)."""
    if not outputs:
        return 0
    total = 0
    for array in outputs.values():
        if array.dtype == object:
            total += sum(len(e) for e in array.flat if isinstance(e, bytes | str))
        else:
            total += array.nbytes
    return total
