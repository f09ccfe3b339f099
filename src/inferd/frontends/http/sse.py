"""Triton's `generate_stream` answer: each response of a request as one server-sent event,
`data: {json}` and a blank line, written as soon as the engine yields it.

The status is sent with the first response, so an error before it is answered as any error
(its status and `{"error": ...}`); an error after it is one last event whose data is
`{"error": ...}`, and the stream ends there, as Triton does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import orjson

from inferd.core.errors import InferdError
from inferd.core.types import InferResponse
from inferd.frontends.http.asgi import Send, shutdown_error
from inferd.frontends.http.generate import encode_generate_response, generated

logger = logging.getLogger(__name__)

EVENT_STREAM = b"text/event-stream; charset=utf-8"
_HEADERS = [(b"content-type", EVENT_STREAM), (b"cache-control", b"no-cache")]

Item = TypeVar("Item")


async def send_events(
    send: Send,
    items: AsyncIterator[Item],
    event_data: Callable[[Item], bytes | None],
    error_data: Callable[[Exception], bytes],
    done: bytes | None = None,
) -> None:
    """Each of `items` as a `data:` event of `event_data(item)` (None: no event), then `done`
    as a last one if given. The status goes with the first event: an error before it is
    answered as any error; after it, `error_data` makes the stream's last event of it. The
    server's shutdown cutting the stream is such an error (UNAVAILABLE), a client leaving none.
    (`items` are encoded here rather than by a generator of events over them: one async
    generator less per event to suspend and resume.)"""
    started = False
    try:
        async for item in items:
            data = event_data(item)
            if data is None:
                continue
            if not started:
                await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
                started = True
            await _send_event(send, data)
    except Exception as exc:
        if not started:
            raise
        await _send_event(send, error_data(exc))
    except asyncio.CancelledError as cancelled:
        await _send_shutdown(send, cancelled, started, error_data)
    if not started:  # a model may answer a request with no response at all
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    if done is not None:
        await _send_event(send, done)
    await send({"type": "http.response.body", "body": b""})


async def _send_shutdown(
    send: Send,
    cancelled: asyncio.CancelledError,
    started: bool,
    error_data: Callable[[Exception], bytes],
) -> None:
    """A stream cancelled by the server's shutdown ends as with any error, UNAVAILABLE: its
    status before its first event, its last event after. A cancellation for its client
    leaving goes on: nobody reads the rest."""
    stopping = shutdown_error(cancelled)
    if not started:
        raise stopping from None
    await _send_event(send, error_data(stopping))


async def send_event_stream(send: Send, responses: AsyncIterator[InferResponse]) -> None:
    """`generate_stream`'s answer: one event per response that carries outputs (`generated`),
    `{"error": ...}` for an error."""
    await send_events(send, responses, _generate_data, _error_data)


def _generate_data(response: InferResponse) -> bytes | None:
    return encode_generate_response(response) if generated(response) else None


async def _send_event(send: Send, data: bytes) -> None:
    event = b"data: " + data + b"\n\n"
    await send({"type": "http.response.body", "body": event, "more_body": True})


def _error_data(error: Exception) -> bytes:
    return orjson.dumps({"error": _message(error)})


def _message(error: Exception) -> str:
    if isinstance(error, InferdError):
        return error.message
    logger.error("generate_stream failed mid-stream", exc_info=error)  # a bug of ours
    return f"internal error: {error!r}"
