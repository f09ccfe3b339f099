"""BLS from a worker process: the model's calls cross the pipe to the server (`CallModel`),
which runs them through its engine and answers each (`CallAnswer`, one per response of a
stream). Their tensors travel in shared memory (`call_memory.py`).

Who reads the answers: a decoupled model's worker has a reader thread (`worker_streams.py`);
any other worker reads its pipe only where it waits (`worker_cancel.py`), so while calls are
pending a pump thread reads it (and stops when none is).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from inferd.backends.python.call_memory import CallMemory
from inferd.backends.python.protocol import AnswerRead, CallAnswer, CallModel, CancelCall
from inferd.backends.python.worker_streams import LockedPipe
from inferd.core.calls import ResponseStream
from inferd.core.types import InferRequest, InferResponse

Pump = Callable[[float], None]  # reads what the pipe has within the time given, dispatching it


class PipeCalls:
    """A `ModelCalls` whose engine is the server's, across the pipe."""

    def __init__(
        self, pipe: LockedPipe, pump: Pump | None, to_server: CallMemory, from_server: CallMemory
    ) -> None:
        self._pipe = pipe
        self._to_server = to_server
        self._from_server = from_server
        self._pump = pump  # None: a reader thread dispatches the answers
        self._keys = itertools.count()
        self._lock = threading.Lock()
        self._waiting: dict[int, Future[InferResponse] | queue.SimpleQueue[CallAnswer | None]] = {}
        self._pumping = False
        # The keys of streams closed early. A queue, not the pipe's lock: a stream may be
        # closed by its finalizer, in whatever thread holds that lock.
        self._closed_early: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._canceller: threading.Thread | None = None

    def submit(self, request: InferRequest) -> Future[InferResponse]:
        future: Future[InferResponse] = Future()
        key = self._call(request, future, stream=False)
        future.add_done_callback(functools.partial(self._given_up, key))
        return future

    def call(self, request: InferRequest) -> InferResponse:
        return self.submit(request).result()

    def _given_up(self, key: int, future: Future[InferResponse]) -> None:
        if future.cancelled():  # its caller timed out: the server stops the request
            self._pipe.send(CancelCall(key))

    def stream(self, request: InferRequest) -> ResponseStream:
        answers: queue.SimpleQueue[CallAnswer | None] = queue.SimpleQueue()
        with self._lock:
            if self._canceller is None:  # started here: a stream's finalizer cannot start it
                self._canceller = threading.Thread(
                    target=self._cancel_given_up, name="bls-cancel", daemon=True
                )
                self._canceller.start()
        return _PipeStream(self._closed_early, self._call(request, answers, stream=True), answers)

    def _cancel_given_up(self) -> None:
        """Cancel each stream closed before its end: the server stops its request, and the
        stream's reader (maybe waiting in another thread) reads its end."""
        while True:
            key = self._closed_early.get()
            with self._lock:
                waiting = self._waiting.pop(key, None)
            if waiting is None:  # it ended meanwhile
                continue
            assert isinstance(waiting, queue.SimpleQueue)
            waiting.put(None)
            with contextlib.suppress(OSError):  # the server is gone: nothing runs any more
                self._pipe.send(CancelCall(key))

    def deliver(self, answer: CallAnswer) -> None:
        """An answer from the server, handed over by whoever read it."""
        if answer.final:
            self._to_server.release(answer.key)  # the server took the call's inputs
        if answer.response is not None and answer.outputs is not None:
            outputs = self._from_server.take_out(answer.size, answer.outputs)
            self._pipe.send(AnswerRead(answer.key, answer.seq))
            answer.response.outputs = outputs
        with self._lock:
            waiting = (
                self._waiting.pop(answer.key, None)
                if answer.final
                else self._waiting.get(answer.key)
            )
        if isinstance(waiting, Future):
            if waiting.done():  # given up (timed out) by its caller
                return
            if answer.error is not None:
                waiting.set_exception(answer.error.error())
            else:
                assert answer.response is not None
                waiting.set_result(answer.response)
        elif waiting is not None:
            waiting.put(answer)

    def _call(
        self,
        request: InferRequest,
        waiting: Future[InferResponse] | queue.SimpleQueue[CallAnswer | None],
        stream: bool,
    ) -> int:
        key = next(self._keys)
        with self._lock:
            self._waiting[key] = waiting
            start = self._pump is not None and not self._pumping
            self._pumping = self._pumping or start
        size, inputs = self._to_server.put(key, request.inputs)
        request.inputs = {}
        self._pipe.send(CallModel(key, request, stream, size, inputs))
        if start:
            threading.Thread(target=self._pump_while_waiting, name="bls-pump", daemon=True).start()
        return key

    def _pump_while_waiting(self) -> None:
        assert self._pump is not None
        while True:
            with self._lock:
                if not self._waiting:
                    self._pumping = False
                    return
            self._pump(0.05)


class _PipeStream:
    """A streamed call's answers, as the pipe's reader hands them over (None: closed early).
    `close`, from any thread or the finalizer, hands the call to the canceller."""

    def __init__(
        self,
        given_up: queue.SimpleQueue[int],
        key: int,
        answers: queue.SimpleQueue[CallAnswer | None],
    ) -> None:
        self._given_up = given_up
        self._key = key
        self._answers = answers
        self._ended = False

    def __iter__(self) -> _PipeStream:
        return self

    def __next__(self) -> InferResponse:
        while not self._ended:
            answer = self._answers.get()
            self._ended = answer is None or answer.final
            if answer is None:
                break
            if answer.error is not None:
                raise answer.error.error()
            if answer.response is not None:
                return answer.response
        raise StopIteration

    def close(self) -> None:
        if not self._ended:
            self._ended = True
            self._given_up.put(self._key)  # reentrant: safe in a finalizer

    __del__ = close
