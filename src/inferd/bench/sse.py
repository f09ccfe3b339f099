"""Streaming over HTTP: the generate extension's `POST .../generate_stream` (server-sent events).

A request is the flat JSON object the extension reads: each input by name, its value the
sample as a (nested) list, BYTES as strings; the server adds the batch axis of a batching model,
so a request holds one sample (`--batch-size 1`). Each `data:` event is one response; an event
whose object has an `error` key is an error mid-stream, and the body's end is the stream's end.
Metadata, config and statistics come from the V2 HTTP client as for unary requests.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

from inferd.bench.inputs import ModelInfo, RequestData
from inferd.bench.transport import HttpTransport
from inferd.core.errors import InvalidArgument

_DATA = b"data:"
_DONE = b"[DONE]"  # the end of an OpenAI stream


class StreamError(Exception):
    """The server answered a stream with an error status or an error event."""


class EventStreamTransport(HttpTransport):
    """A transport whose streams are server-sent events on the V2 HTTP port (metadata, config
    and statistics from the V2 client); each subclass names its endpoint and events."""

    def __init__(self, url: str, model: str, version: str, connections: int) -> None:
        super().__init__(url, model, version, connections)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def events(self, endpoint: str, body: bytes) -> AsyncIterator[Any]:
        """Each `data:` event's JSON, until the body ends or `data: [DONE]`."""
        session = self._open_session()
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        async with session.post(endpoint, data=body, headers=headers) as response:
            if response.status != 200:
                raise StreamError(f"HTTP {response.status}: {(await response.text()).strip()}")
            async for line in response.content:
                if not line.startswith(_DATA):
                    continue  # the blank line between events, or a comment
                data = line[len(_DATA) :].strip()
                if data == _DONE:
                    return
                yield json.loads(data)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await super().close()

    def _open_session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running event loop, as aiohttp wants.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connections)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self._session


class SseTransport(EventStreamTransport):
    def __init__(self, url: str, model: str, version: str, connections: int) -> None:
        super().__init__(url, model, version, connections)
        path = f"/v2/models/{quote(model, safe='')}"
        if version:
            path += f"/versions/{quote(version, safe='')}"
        self._endpoint = f"http://{url}{path}/generate_stream"
        self._batches = False

    async def model_info(self) -> ModelInfo:
        info = await super().model_info()
        self._batches = info.batches
        return info

    def prepare(self, request: RequestData) -> Any:
        return json.dumps(
            {name: self._sample(name, array) for name, array in request.items()}
        ).encode()

    async def stream(self, prepared: Any) -> AsyncIterator[None]:
        async for event in self.events(self._endpoint, prepared):
            if isinstance(event, dict) and "error" in event:
                raise StreamError(str(event["error"]))
            yield

    def _sample(self, name: str, array: Any) -> Any:
        if self._batches:
            array = array[0]  # one sample: the options allow only --batch-size 1 here
        if array.dtype.kind == "O":
            try:
                return _decoded(array.tolist())
            except UnicodeDecodeError:
                raise InvalidArgument(
                    f"input '{name}': SSE sends BYTES as JSON strings, and these are not UTF-8"
                ) from None
        return array.tolist()


def _decoded(value: Any) -> Any:
    if isinstance(value, list):
        return [_decoded(item) for item in value]
    return value.decode() if isinstance(value, bytes) else value
