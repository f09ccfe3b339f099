"""The engine's `ModelCalls`: what a model running in an instance's thread uses to call other
models of this server (BLS), through the engine's own request path on its event loop.

The calling thread blocks (or its own event loop awaits); the engine's loop never does.
"""

from __future__ import annotations

import asyncio
import functools
import queue
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from inferd.core.calls import ResponseStream
from inferd.core.errors import Unavailable
from inferd.core.types import InferRequest, InferResponse

Infer = Callable[[InferRequest], Coroutine[Any, Any, InferResponse]]
Stream = Callable[[InferRequest], AsyncIterator[InferResponse]]

_END = object()


class EngineCalls:
    def __init__(self, infer: Infer, stream: Stream) -> None:
        self._infer = infer
        self._stream = stream
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

    def _start(
        self, loop: asyncio.AbstractEventLoop, request: InferRequest, future: Future[InferResponse]
    ) -> None:
        if future.cancelled():  # given up before it started
            return
        task = loop.create_task(self._answer(request, future))
        future.add_done_callback(functools.partial(_cancel_with, loop, task))

    async def _answer(self, request: InferRequest, future: Future[InferResponse]) -> None:
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
        if loop.is_running() and _on_loop_thread(loop):
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
    loop: asyncio.AbstractEventLoop, task: asyncio.Task[None], future: Future[InferResponse]
) -> None:
    """The caller cancelled its future (it gave up waiting): the request is cancelled too."""
    if future.cancelled() and not loop.is_closed():
        loop.call_soon_threadsafe(task.cancel)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
