"""One `ModelStreamInfer` call: requests run concurrently, responses go out as they come.

Each request of the stream runs as a task (up to `STREAM_WINDOW` at once; the reader waits
beyond that) that puts its encoded responses on the call's one outbox (`outbox.py`; bounded,
so a client that reads slowly holds the requests back):

- a model that is not decoupled answers once, and those answers leave in request order, as
  they always did (each waits for the answer of the one before it). While the client does
  not read (the outbox is full) and `ANSWERS_WAITING` such answers wait, the reader stops
  reading requests, so a client that sends and never reads holds back its own requests
  instead of growing the server's memory. Answers waiting behind a request that is still
  running do not stop the reader: that request may need a later one of the stream (a
  sequence waiting for the slot of one whose last step is still to be read);
- a decoupled model's responses leave as the model sends them, interleaved with other
  requests', each tagged with its request's id. The final flag alone (a response without
  outputs) is sent only when the request sets `triton_enable_empty_final_response`. While
  the outbox has room, each response but the last is encoded into it in the callback that
  delivers it (`_Taker`, `Engine.stream`'s `taker`): a step of an iterative batch wakes no
  task per response.

As in Triton, every response carries the `triton_final_response` parameter: true on the last
one of its request (the only one of a model that is not decoupled, and a failure).

A failed request is answered in-stream with `error_message`; the stream stays open. When the
call ends early (the client cancels it, e.g. `stop_stream(cancel_requests=True)`), every
request still running is cancelled: a queued one leaves its queue, a running one is marked
cancelled for its model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from tritonclient.grpc import service_pb2 as pb

from inferd.core.errors import InferdError
from inferd.core.running_loop import running_loop
from inferd.core.tracing import TraceParent
from inferd.core.types import InferResponse
from inferd.engine.engine import Engine
from inferd.frontends.grpc.codec import decode_infer_request
from inferd.frontends.grpc.malformed import Malformed
from inferd.frontends.grpc.outbox import Outbox
from inferd.frontends.grpc.stream_encoder import StreamEncoder
from inferd.frontends.shared_memory import SharedMemoryRegistry

logger = logging.getLogger(__name__)

# Requests of one stream that may be in the engine at once; the reader waits beyond that.
STREAM_WINDOW: Final = 64
# Responses of one stream waiting for grpc to write them: one per request of a full window, so
# a step of an iterative batch makes no request wait for room while the client keeps up.
OUTBOX_LIMIT: Final = STREAM_WINDOW
# Unary answers of one stream waiting for their turn or for room in the outbox, beyond which
# the reader stops while the outbox is full.
ANSWERS_WAITING: Final = STREAM_WINDOW
EMPTY_FINAL_PARAMETER: Final = "triton_enable_empty_final_response"
FINAL_PARAMETER: Final = "triton_final_response"

Infer = Callable[[Any], Awaitable[Any]]  # a unary answer, encoded


class StreamCall:
    """The requests of one call in flight, and the outbox its responses leave through."""

    def __init__(
        self,
        engine: Engine,
        shared_memory: SharedMemoryRegistry,
        infer: Infer,
        trace_parent: TraceParent | None = None,  # the call's, for its decoupled requests
    ) -> None:
        self._engine = engine
        self._shared_memory = shared_memory
        self._infer = infer
        self._trace_parent = trace_parent
        self._window = asyncio.Semaphore(STREAM_WINDOW)
        self._outbox = Outbox(OUTBOX_LIMIT, on_room=self._resume)
        self._running: set[asyncio.Task[None]] = set()
        self._reading = True
        self._waiting = 0  # unary answers answered and not yet in the outbox
        self._paused: asyncio.Future[None] | None = None  # the reader's, while it waits
        # Set once the last unary answer so far was sent: the next one waits for it.
        self._last_answer: asyncio.Future[None] | None = None

    async def responses(self, request_iterator: AsyncIterator[Any]) -> AsyncIterator[Any]:
        reader = asyncio.create_task(self._read(request_iterator))
        try:
            while (response := await self._outbox.get()) is not None:
                yield response
            await reader  # a broken request stream ends the RPC with its error
        finally:
            reader.cancel()
            for task in list(self._running):
                task.cancel()

    async def _read(self, request_iterator: AsyncIterator[Any]) -> None:
        try:
            async for message in request_iterator:
                while self._waiting >= ANSWERS_WAITING and self._outbox.full:
                    self._paused = running_loop().create_future()
                    try:
                        await self._paused
                    finally:
                        self._paused = None
                await self._window.acquire()
                task = asyncio.create_task(self._one(message))
                self._running.add(task)
                task.add_done_callback(self._finished)
        finally:
            self._reading = False
            if not self._running:
                self._outbox.close()

    def _resume(self) -> None:
        """An answer left for the outbox, or the outbox has room: the reader checks again."""
        paused = self._paused
        if paused is not None and not paused.done():
            paused.set_result(None)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not self._reading and not self._running:
            self._outbox.close()

    def _decoupled(self, message: Any) -> bool:
        if isinstance(message, Malformed):
            return False
        try:
            return self._engine.model_decoupled(message.model_name, message.model_version)
        except InferdError:
            return False  # answered by the unary path, with its error

    async def _one(self, message: Any) -> None:
        if self._decoupled(message):
            try:
                await self._stream(message)
            finally:
                self._window.release()
            return
        previous = self._last_answer
        sent = self._last_answer = running_loop().create_future()
        try:
            try:
                answer = await self._answer(message)
            finally:
                # Its room in the window is for work in the engine: an answer waiting for its
                # turn must not hold it, or answered steps of sequences that are running
                # could stop the reader from reaching the steps that end them, while the
                # sequences waiting for their slots hold the turn (a deadlock).
                self._window.release()
            self._waiting += 1
            try:
                if previous is not None:
                    await previous
                await self._outbox.put(answer)
            finally:
                self._waiting -= 1
                self._resume()
        finally:
            sent.set_result(None)

    async def _answer(self, message: Any) -> Any:
        try:
            answer = await self._infer(message)  # sent as a stream answer by wire.py
            answer.header.parameters[FINAL_PARAMETER].bool_param = True
            return answer
        except InferdError as exc:
            return _error(message, exc.message)
        except Exception as exc:  # a bug of ours: report it in-stream, keep the stream
            logger.exception("unhandled error in ModelStreamInfer")
            return _error(message, f"internal error: {exc!r}")

    async def _stream(self, message: Any) -> None:
        received = time.monotonic_ns()
        try:
            request = decode_infer_request(message, self._shared_memory)
            request.timestamps.received = received
            request.timestamps.protocol = "GRPC"
            request.trace_parent = self._trace_parent
            empty_final = request.parameters.get(EMPTY_FINAL_PARAMETER) is True
            encoder = StreamEncoder(request.outputs, self._shared_memory)
            taker = _Taker(encoder, self._outbox)
            async for response in self._engine.stream(request, taker):
                if response.outputs or not response.final or empty_final:
                    response.parameters[FINAL_PARAMETER] = response.final
                    # Waiting for room here leaves the model's responses in its channel,
                    # whose sends block once it is full.
                    await self._outbox.put(encoder.encode(response))
        except InferdError as exc:
            await self._outbox.put(_error(message, exc.message))
        except Exception as exc:  # a bug of ours: report it in-stream, keep the stream
            logger.exception("unhandled error in ModelStreamInfer")
            await self._outbox.put(_error(message, f"internal error: {exc!r}"))


class _Taker:
    """Encodes a response of one request into the call's outbox in the callback that delivers
    it, while the outbox has room (`ResponseTaker`)."""

    __slots__ = ("_encoder", "_outbox")

    def __init__(self, encoder: StreamEncoder, outbox: Outbox) -> None:
        self._encoder = encoder
        self._outbox = outbox

    def offer(self, response: InferResponse) -> bool:
        if self._outbox.full:
            return False
        response.parameters[FINAL_PARAMETER] = False  # never the last: `stream` yields that
        try:
            encoded = self._encoder.encode(response)
        except Exception:  # left to `_stream`, which encodes it again and reports the error
            return False
        return self._outbox.offer(encoded)


def _error(message: Any, error: str) -> Any:
    echo = pb.ModelInferResponse(
        model_name=message.model_name, model_version=message.model_version, id=message.id
    )
    echo.parameters[FINAL_PARAMETER].bool_param = True  # a failure ends its request
    return pb.ModelStreamInferResponse(error_message=error, infer_response=echo)
