"""The express lane: an infer request (`POST /v2/models/{m}[/versions/{v}]/infer`) with a
plain `Content-Length` body is read by the connection's protocol (http/protocol.py) and handed
to the frontend whole, and its answer written to the transport as bytes, without uvicorn's
per-request ASGI machinery (its request-response cycle, message dicts and header checks):
about 25 us of one core per request (docs/benchmarks.md).

An `Exchange` stands in uvicorn's `cycle` slot of the protocol while its request is in flight,
with the attributes uvicorn reads and writes there, so that uvicorn's own connection handling
stays as it is: a pipelined request queues behind it, `connection_lost` marks it disconnected,
a graceful shutdown ends its connection once it is answered (`keep_alive`), and its answer
starts the next request queued (`on_response`). Whatever the lane does not take (any other
route, a chunked, compressed or oversized body, `Expect: 100-continue`, a request behind
another in flight) goes the ASGI way, unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from inferd.core.running_loop import running_loop
from inferd.frontends.http.answer_groups import AnswerGroups
from inferd.frontends.http.asgi import Message
from inferd.frontends.kept_headers import keep

if TYPE_CHECKING:
    from inferd.frontends.http.app import ExtraHeaders

_DISCONNECT: Message = {"type": "http.disconnect"}
_INTERNAL_ERROR = b"Internal Server Error"
MAX_HEADS: Final = 64

DefaultHeaders = list[tuple[bytes, bytes]]
HeadKey = tuple[int, bytes, "ExtraHeaders | None", bool]
# The head of each kind of answer (status, content type, extra headers, keep-alive), split
# around its content length, with the default headers it was written with: uvicorn replaces
# those (a new list, its `date` header) each second, and a head of older ones is written again.
# Writing a head costs about 2 us; a kept one, a dict lookup and a join.
_heads: dict[HeadKey, tuple[DefaultHeaders, bytes, bytes]] = {}


class Exchange:
    """One infer request on the express lane, from its headers to its answer."""

    __slots__ = (
        "_lost",
        "answer_groups",
        "body",
        "chunks",
        "default_headers",
        "disconnected",
        "fields",
        "flow",
        "headers",
        "keep_alive",
        "model",
        "on_response",
        "path",
        "received",
        "response_complete",
        "transport",
        "version",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        flow: FlowControl,
        default_headers: list[tuple[bytes, bytes]],
        headers: list[tuple[bytes, bytes]],
        fields: dict[bytes, bytes],
        target: tuple[str, str],
        path: str,
        keep_alive: bool,
        on_response: Callable[[], None],
        received: int,
        answer_groups: AnswerGroups,
    ) -> None:
        self.transport = transport
        self.flow = flow
        self.default_headers = default_headers
        self.headers = headers
        self.fields = fields  # `headers` as a dict, the last of a repeated name kept
        self.model, self.version = target
        self.path = path
        self.keep_alive = keep_alive
        self.on_response = on_response
        self.received = received
        self.answer_groups = answer_groups  # the server's: see http/answer_groups.py
        self.chunks: list[bytes] = []
        self.body = b""
        self.disconnected = False
        self.response_complete = False
        self._lost: asyncio.Future[None] | None = None

    @property
    def message_event(self) -> Exchange:
        """uvicorn's `connection_lost` calls `cycle.message_event.set()` after marking the
        cycle disconnected: here, `set` wakes `until_lost`."""
        return self

    def set(self) -> None:
        if self.disconnected and self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def read(self) -> None:
        """The body is in: join its chunks."""
        chunks = self.chunks
        self.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []

    async def until_lost(self) -> Message:
        """An ASGI `receive` for the disconnect watcher: returns once the client is gone."""
        if not self.disconnected:
            if self._lost is None:
                self._lost = running_loop().create_future()
            await self._lost
        return _DISCONNECT

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: bytes,
        extra_headers: ExtraHeaders | None,
    ) -> None:
        """Write the answer, as uvicorn's cycle writes one given a content length: its default
        headers (`date`) first, `connection: close` when the connection ends after it. On a
        connection kept alive, the answer may wait to leave with the next ones (`AnswerGroups`)."""
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        defaults = self.default_headers
        key = (status, content_type, extra_headers, self.keep_alive)
        kept = _heads.get(key)
        if kept is None or kept[0] is not defaults:
            kept = (defaults, *_head(key, defaults))
            keep(_heads, key, kept, MAX_HEADS)
        answer = b"".join((kept[1], b"%d" % len(body), kept[2], body))
        self.response_complete = True
        if self.keep_alive:
            self.answer_groups.write(self.transport, answer)
        else:
            self.transport.write(answer)
            self.transport.close()
        self.on_response()

    async def fail(self) -> None:
        """uvicorn's answer to an app that raised before answering, and the connection closed."""
        self.keep_alive = False
        if self.response_complete:
            self.transport.close()
            return
        await self.respond(500, _INTERNAL_ERROR, b"text/plain; charset=utf-8", None)


def _head(key: HeadKey, defaults: DefaultHeaders) -> tuple[bytes, bytes]:
    """An answer's head, up to its content length's value and from the end of that line."""
    status, content_type, extra_headers, keep_alive = key
    head = [STATUS_LINE[status]]
    for name, value in defaults:
        head += (name, b": ", value, b"\r\n")
    head += (b"content-type: ", content_type, b"\r\ncontent-length: ")
    rest = [b"\r\n"]
    for name, value in extra_headers or ():
        rest += (name, b": ", value, b"\r\n")
    if not keep_alive:
        rest.append(b"connection: close\r\n")
    rest.append(b"\r\n")
    return b"".join(head), b"".join(rest)
