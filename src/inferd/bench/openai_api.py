"""Streaming over the OpenAI-compatible routes: `POST /v1/completions` or `/v1/chat/completions`
with `stream: true` (server-sent events of OpenAI's chunks, ending in `data: [DONE]`).

Every request is the same prompt (a user message for chat) and `max_tokens`; the model's
tensors are not sent, so `--input-data` and `--shape` do not apply. A chunk that carries text
(`choices[0].text`, or a chat's `choices[0].delta.content`) is one response: the opening chat
chunk with only the role, and the last with only `finish_reason`, are not. A chunk with an
`error` key is an error mid-stream. Metadata, config and statistics come from the V2 HTTP
client on the same port.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from inferd.bench.inputs import RequestData
from inferd.bench.options import OpenAIRoute
from inferd.bench.sse import EventStreamTransport, StreamError


class OpenAITransport(EventStreamTransport):
    def __init__(
        self,
        url: str,
        model: str,
        connections: int,
        route: OpenAIRoute,
        prompt: str,
        max_tokens: int,
    ) -> None:
        super().__init__(url, model, "", connections)
        self._chat = route == "chat"
        self._endpoint = f"http://{url}/v1/{'chat/completions' if self._chat else 'completions'}"
        self._body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "stream": True}
        if self._chat:
            self._body["messages"] = [{"role": "user", "content": prompt}]
        else:
            self._body["prompt"] = prompt

    def prepare(self, request: RequestData) -> Any:
        return json.dumps(self._body).encode()

    async def stream(self, prepared: Any) -> AsyncIterator[None]:
        async for chunk in self.events(self._endpoint, prepared):
            if not isinstance(chunk, dict):
                raise StreamError(f"the stream sent {type(chunk).__name__}, not a chunk object")
            if "error" in chunk:
                raise StreamError(str(chunk["error"]))
            if self._text(chunk):
                yield

    def _text(self, chunk: dict[str, Any]) -> str:
        choices = chunk.get("choices") or [{}]
        choice = choices[0]
        if self._chat:
            return str((choice.get("delta") or {}).get("content") or "")
        return str(choice.get("text") or "")
