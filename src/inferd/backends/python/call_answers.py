"""The server's side of a worker process's BLS calls: each `CallModel` runs through the
engine's calls, and its answers go back to the worker as `CallAnswer`s (from whichever thread
has them: the event loop for a response, a thread of its own for a stream)."""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future

from inferd.backends.python.call_memory import CallMemory
from inferd.backends.python.protocol import (
    AnswerRead,
    CallAnswer,
    CallModel,
    CancelCall,
    WireError,
)
from inferd.core.calls import ModelCalls, ResponseStream
from inferd.core.errors import InferdError, Internal, Unavailable
from inferd.core.tracing import TraceParent
from inferd.core.types import InferResponse


class CallAnswerer:
    def __init__(
        self,
        calls: ModelCalls | None,
        send: Callable[[CallAnswer], None],
        from_worker: CallMemory,
        to_worker: CallMemory,
    ) -> None:
        self._calls = calls
        self._send = send  # thread-safe; raises OSError (or the worker's loss) when it is gone
        self._from_worker = from_worker
        self._to_worker = to_worker
        self._running: dict[int, Future[InferResponse]] = {}  # by key, until answered
        self._streams: dict[int, ResponseStream] = {}  # by key, until they end
        # The traced span of the batch the worker runs, which its calls go under.
        self.calls_parent: TraceParent | None = None

    def take(self, call: CallModel) -> None:
        call.request.inputs = self._from_worker.take_out(call.size, call.inputs)
        if call.request.trace_parent is None:
            call.request.trace_parent = self.calls_parent
        if self._calls is None:
            self._answer(call.key, error=Unavailable("this server lends no model calls"))
        elif call.stream:
            try:
                stream = self._calls.stream(call.request)
            except InferdError as exc:
                self._answer(call.key, error=exc)
                return
            self._streams[call.key] = stream
            threading.Thread(
                target=self._stream, args=(call.key, stream), name="bls-stream", daemon=True
            ).start()
        else:
            try:
                future = self._calls.submit(call.request)
            except InferdError as exc:
                self._answer(call.key, error=exc)
                return
            self._running[call.key] = future
            future.add_done_callback(functools.partial(self._answered, call.key))

    def cancel(self, given_up: CancelCall) -> None:
        """The worker stopped waiting for a call (timed out), or closed its stream early: the
        engine cancels its request (dequeued, or flagged to its model), which then ends."""
        future = self._running.get(given_up.key)
        if future is not None:
            future.cancel()
        stream = self._streams.get(given_up.key)
        if stream is not None:
            stream.close()

    def _answered(self, key: int, future: Future[InferResponse]) -> None:
        self._running.pop(key, None)
        try:
            response = future.result()
        except InferdError as exc:
            self._answer(key, error=exc)
        except BaseException as exc:  # cancelled with the engine, or a fault of the server
            self._answer(key, error=Internal(f"the call failed: {exc!r}"))
        else:
            self._answer(key, response)

    def read(self, done: AnswerRead) -> None:
        """The worker copied an answer's outputs out."""
        self._to_worker.release((done.key, done.seq))

    def _stream(self, key: int, stream: ResponseStream) -> None:
        # Its final answer also tells the worker that its inputs were taken.
        try:
            for seq, response in enumerate(stream):
                if not self._answer(key, response, final=False, seq=seq):
                    stream.close()  # the worker is gone: its call is cancelled
                    return
            self._answer(key)
        except InferdError as exc:
            self._answer(key, error=exc)
        finally:
            self._streams.pop(key, None)

    def _answer(
        self,
        key: int,
        response: InferResponse | None = None,
        error: InferdError | None = None,
        final: bool = True,
        seq: int = 0,
    ) -> bool:
        """Whether the answer was sent: False when the worker is gone (nobody waits)."""
        wire = None if error is None else WireError.of(error)
        try:
            if response is None:
                self._send(CallAnswer(key, None, wire, final, seq))
                return True
            size, outputs = self._to_worker.put((key, seq), response.outputs)
            bare = dataclasses.replace(response, outputs={})
            self._send(CallAnswer(key, bare, wire, final, seq, size, outputs))
        except Exception:
            return False
        return True
