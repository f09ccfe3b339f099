"""The engine's `ModelCalls`: what a model running in an instance's thread uses to call other
models of this server (BLS), through the engine's own request path on its event loop.

The calling thread blocks (or its own event loop awaits); the engine's loop never does.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any

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
        return asyncio.run_coroutine_threadsafe(self._infer(request), self._running())

    def stream(self, request: InferRequest) -> Iterator[InferResponse]:
        loop = self._running()
        items: queue.SimpleQueue[object] = queue.SimpleQueue()
        pump = asyncio.run_coroutine_threadsafe(self._pump(request, items), loop)
        try:
            while (item := items.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, InferResponse)
                yield item
        finally:
            pump.cancel()  # closed early: the request is cancelled

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


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
