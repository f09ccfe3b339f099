"""BLS from a worker process: the model's calls cross the pipe to the server (`CallModel`),
which runs them through its engine and answers each (`CallAnswer`, one per response of a
stream). Their tensors travel in shared memory (`call_memory.py`).

Who reads the answers: a decoupled model's worker has a reader thread (`worker_streams.py`);
any other worker reads its pipe only where it waits (`worker_cancel.py`), so while calls are
pending a pump thread reads it (and stops when none is).
"""

from __future__ import annotations

import functools
import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from inferd.backends.python.call_memory import CallMemory
from inferd.backends.python.protocol import AnswerRead, CallAnswer, CallModel, CancelCall
from inferd.backends.python.worker_streams import LockedPipe
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
        self._waiting: dict[int, Future[InferResponse] | queue.SimpleQueue[CallAnswer]] = {}
        self._pumping = False

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

    def stream(self, request: InferRequest) -> Iterator[InferResponse]:
        answers: queue.SimpleQueue[CallAnswer] = queue.SimpleQueue()
        self._call(request, answers, stream=True)
        while True:
            answer = answers.get()
            if answer.error is not None:
                raise answer.error.error()
            if answer.response is not None:
                yield answer.response
            if answer.final:
                return

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
        waiting: Future[InferResponse] | queue.SimpleQueue[CallAnswer],
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
