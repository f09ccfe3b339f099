"""The engine's `ModelCalls`: what a model running in an instance's thread uses to call other
models of this server (BLS), through the engine's own request path on its event loop.

The calling thread blocks (or its own event loop awaits); the engine's loop never does.

A call waited for in the model's thread (`call`) costs one trip to the loop and back when the
called model does not batch and has an instance idle: the loop checks the request and lends
that instance (`Engine.call_here`), the calling thread runs the batch itself (`HereCall.run`),
and the loop is then told to report it and take the instance back, without the caller waiting
for that. Any other call runs as a client's request does, in a task on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from inferd.core.calls import ResponseStream
from inferd.core.errors import InferdError, Unavailable
from inferd.core.running_loop import running_loop
from inferd.core.tracing import RequestTracing
from inferd.core.types import Array, InferRequest, InferResponse, RequestedOutput
from inferd.engine.loader import LoadedVersion
from inferd.scheduling.lease import Lease

Infer = Callable[[InferRequest], Coroutine[Any, Any, InferResponse]]
Stream = Callable[[InferRequest], AsyncIterator[InferResponse]]
CallHere = Callable[[InferRequest], "HereCall | None"]

_END = object()


@dataclass(slots=True, eq=False)
class HereCall:
    """A model's call that its waiting thread runs on the called model's instance lent to it
    (made by `Engine.call_here` on the loop, with the request checked)."""

    request: InferRequest
    loaded: LoadedVersion
    lease: Lease
    tracing: RequestTracing | None
    # The engine's part: the outputs as the caller gets them (on the calling thread), and
    # what it does once the call ended (on the loop: the outputs, or what the call raised).
    finish: Callable[
        [LoadedVersion, dict[str, Array], list[RequestedOutput] | None], dict[str, Array]
    ]
    ended: Callable[[HereCall, dict[str, Array] | None, BaseException | None], None]
    loop: asyncio.AbstractEventLoop

    def run(self) -> InferResponse:
        """The response, run on this thread; raises the call's `InferdError`."""
        request = self.request
        outputs: dict[str, Array] | None = None
        failure: BaseException | None = None
        try:
            answer = self.lease.run(request)
            if isinstance(answer, InferdError):
                raise answer
            outputs = self.finish(self.loaded, answer, request.outputs)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            request.timestamps.sent = time.monotonic_ns()
            self.loop.call_soon_threadsafe(self.ended, self, outputs, failure)
        return InferResponse(request.model_name, str(self.loaded.version), outputs, request.id)


class EngineCalls:
    def __init__(self, infer: Infer, stream: Stream, call_here: CallHere) -> None:
        self._infer = infer
        self._stream = stream
        self._call_here = call_here
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the engine serves on (known once it starts)."""
        self._loop = loop

    def submit(self, request: InferRequest) -> Future[InferResponse]:
        # Lighter than `run_coroutine_threadsafe`: the call's coroutine answers the caller's
        # future itself, without waiting a loop iteration for its task's done callbacks.
        loop = self._running()
        future: Future[InferResponse] = Future()
        loop.call_soon_threadsafe(self._start, loop, request, future)
        return future

    def call(self, request: InferRequest) -> InferResponse:
        """The response, waited for in this thread, which runs the called model itself when
        it can (the module's docstring); raises the call's `InferdError`."""
        loop = self._running()
        if _running_loop() is not None:
            # The called model's `async def` hooks could not run their loop on this thread.
            return self.submit(request).result()
        started: Future[Any] = Future()  # a `HereCall` to run, or the response
        loop.call_soon_threadsafe(self._begin, loop, request, started)
        outcome = started.result()
        return outcome.run() if isinstance(outcome, HereCall) else outcome

    def _begin(
        self, loop: asyncio.AbstractEventLoop, request: InferRequest, started: Future[Any]
    ) -> None:
        try:
            here = self._call_here(request)
        except Exception as exc:  # an InferdError for the caller to raise
            started.set_exception(exc)
            return
        if here is None:
            self._start(loop, request, started)
        else:
            started.set_result(here)

    def _start(
        self, loop: asyncio.AbstractEventLoop, request: InferRequest, future: Future[Any]
    ) -> None:
        if future.cancelled():  # given up before it started
            return
        task = loop.create_task(self._answer(request, future))
        future.add_done_callback(functools.partial(_cancel_with, loop, task))

    async def _answer(self, request: InferRequest, future: Future[Any]) -> None:
        try:
            response = await self._infer(request)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:  # an InferdError for the caller to raise
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)
            return
        if future.set_running_or_notify_cancel():
            future.set_result(response)

    def stream(self, request: InferRequest) -> ResponseStream:
        loop = self._running()
        items: queue.SimpleQueue[object] = queue.SimpleQueue()
        pump = asyncio.run_coroutine_threadsafe(self._pump(request, items), loop)
        return _Responses(pump, items)

    async def _pump(self, request: InferRequest, items: queue.SimpleQueue[object]) -> None:
        try:
            async for response in self._stream(request):
                items.put(response)
        except Exception as exc:  # an InferdError for the caller to raise
            items.put(exc)
        finally:
            items.put(_END)

    def _running(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():
            raise Unavailable("the server is not running: no model can be called")
        if loop.is_running() and _running_loop() is loop:
            # Waiting here would stop the loop that answers.
            raise Unavailable("a model cannot be called from the server's event loop thread")
        return loop


class _Responses:
    """A streamed call's responses, as the pump hands them over. `close` may come from
    another thread than the reader's (a worker's cancelled call): cancelling the pump cancels
    the request, and its end wakes a reader waiting for the next response."""

    def __init__(self, pump: Future[None], items: queue.SimpleQueue[object]) -> None:
        self._pump = pump
        self._items = items
        self._ended = False

    def __iter__(self) -> _Responses:
        return self

    def __next__(self) -> InferResponse:
        item = _END if self._ended else self._items.get()
        if item is _END:
            self._ended = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        assert isinstance(item, InferResponse)
        return item

    def close(self) -> None:
        if self._pump.cancel():  # False once the stream ended
            # A pump cancelled before it started never puts its end.
            self._items.put(_END)

    __del__ = close


def _cancel_with(
    loop: asyncio.AbstractEventLoop, task: asyncio.Task[None], future: Future[Any]
) -> None:
    """The caller cancelled its future (it gave up waiting): the request is cancelled too."""
    if future.cancelled() and not loop.is_closed():
        loop.call_soon_threadsafe(task.cancel)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running on this thread, if any."""
    try:
        return running_loop()
    except RuntimeError:
        return None
