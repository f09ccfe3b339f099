"""The `/v1` routes (docs/openai.md), each answered with OpenAI's objects and errors:

    GET  /v1/models[/{m}]          the models that declare an `openai.task`
    POST /v1/completions           a prompt -> text          (stream: server-sent events)
    POST /v1/chat/completions      messages -> a message     (stream: server-sent events)
    POST /v1/embeddings            texts -> vectors (float or base64)

A stream is `data: {chunk}` events ending in `data: [DONE]`; it stops, and so does the work
behind it, when its client disconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from inferd.core.errors import InferdError, InvalidArgument
from inferd.core.tracing import TraceParent
from inferd.core.types import Array, InferRequest
from inferd.engine.engine import Engine
from inferd.frontends.http.asgi import Receive, Scope, Send, shutdown_as_error, until_disconnect
from inferd.frontends.http.codec import loads
from inferd.frontends.http.generate import tensor_from_json
from inferd.frontends.http.sse import send_events
from inferd.frontends.http.trace_context import client_trace
from inferd.frontends.openai.documents import Answer, embedding_list, model_list
from inferd.frontends.openai.errors import (
    MethodNotAllowed,
    NoRoute,
    error_document,
    error_status,
)
from inferd.frontends.openai.mapping import OpenAIMapping, declares_openai, openai_mapping
from inferd.frontends.openai.requests import (
    BadField,
    Generation,
    chat_request,
    completion_request,
    embeddings_request,
    model_of,
)
from inferd.frontends.openai.text import Outcome, text_pieces

ReadBody = Callable[[Scope, Receive], Awaitable[bytes]]
_JSON = [(b"content-type", b"application/json")]


class OpenAIRoutes:
    def __init__(self, engine: Engine, read_body: ReadBody) -> None:
        self._engine = engine
        self._read_body = read_body

    async def handle(self, scope: Scope, receive: Receive, send: Send, parts: list[str]) -> None:
        """Answer a request whose path starts with /v1; any inferd error as OpenAI's object."""
        try:
            await self._dispatch(scope, receive, send, parts[1:])
        except InferdError as exc:
            await _respond(send, error_status(exc), error_document(exc))

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, route: list[str]) -> None:
        method = scope["method"]
        if route[:1] == ["models"] and len(route) <= 2:
            _expect(method, "GET")
            names = self._served_models() if len(route) == 1 else [self._served(route[1])]
            listing = model_list(names)
            await _respond(send, 200, listing if len(route) == 1 else listing["data"][0])
            return
        kind = {("completions",): "completions", ("chat", "completions"): "chat"}.get(tuple(route))
        if kind is None and route != ["embeddings"]:
            raise NoRoute(f"no route for {scope['path']}")
        _expect(method, "POST")
        document = loads(await self._read_body(scope, receive), "request body")
        # The engine spans these requests (when it traces so), in the client's trace.
        parent = None if self._engine.tracing is None else client_trace(scope["headers"])
        if kind is None:
            await self._embeddings(receive, send, document, parent)
        else:
            await self._generate(receive, send, document, kind, parent)

    def _served_models(self) -> list[str]:
        names = sorted({row.name for row in self._engine.repository_index(ready_only=True)})
        return [name for name in names if self._declares(name)]

    def _declares(self, name: str) -> bool:
        try:
            return declares_openai(self._engine.model_config(name))
        except InferdError:  # unloaded since the index was read
            return False

    def _served(self, name: str) -> str:
        openai_mapping(self._engine.model_config(name), name)
        return name

    def _mapping(self, model: str, task: str) -> OpenAIMapping:
        mapping = openai_mapping(self._engine.model_config(model), model)
        if task not in mapping.tasks:
            tasks = sorted(mapping.tasks)
            raise BadField("model", f"model '{model}' serves {tasks} on /v1, not {task}")
        return mapping

    async def _generate(
        self, receive: Receive, send: Send, document: Any, kind: str, parent: TraceParent | None
    ) -> None:
        model = model_of(document)
        mapping = self._mapping(model, kind)
        chat = kind == "chat"
        generation = (chat_request if chat else completion_request)(document, mapping)
        request = self._infer_request(generation, mapping)
        request.trace_parent = parent
        responses = self._engine.stream(request)
        outcome = Outcome()
        max_tokens = generation.sampling.get("max_tokens")
        pieces = text_pieces(responses, mapping, generation.stop, max_tokens, outcome)
        answer = Answer(model, chat)
        try:
            if generation.stream:
                chunks = _chunks(answer, pieces, outcome, generation.include_usage)
                await until_disconnect(receive, _send_events(send, chunks))
            else:
                await until_disconnect(receive, _send_whole(send, answer, pieces, outcome))
        finally:  # stop a generation left before its end (a stop string, a disconnect)
            await pieces.aclose()
            if isinstance(responses, AsyncGenerator):
                await responses.aclose()

    def _infer_request(self, generation: Generation, mapping: OpenAIMapping) -> InferRequest:
        """The prompt into the model's text input; each sampling field into its input, or as
        a request parameter of its own name."""
        specs, max_batch_size = self._engine.input_specs(generation.model)
        by_name = {spec.name: spec for spec in specs}
        values: dict[str, Any] = {mapping.input: generation.prompt}
        parameters: dict[str, Any] = {}
        for name, value in generation.sampling.items():
            target = mapping.field_inputs.get(name)
            if target is not None:
                values[target] = value
            else:
                parameters[name] = orjson.dumps(value).decode() if name == "stop" else value
        inputs = {}
        for name, value in values.items():
            spec = by_name.get(name)
            if spec is None:
                raise InvalidArgument(
                    f"model '{generation.model}' maps a field to '{name}', which is not one of "
                    f"its inputs {sorted(by_name)}"
                )
            inputs[name] = tensor_from_json(value, spec, max_batch_size > 0, generation.model)
        return InferRequest(generation.model, inputs, parameters=parameters)

    async def _embeddings(
        self, receive: Receive, send: Send, document: Any, parent: TraceParent | None
    ) -> None:
        model = model_of(document)
        mapping = self._mapping(model, "embeddings")
        request = embeddings_request(document)
        specs, max_batch_size = self._engine.input_specs(model)
        spec = next((s for s in specs if s.name == mapping.input), None)
        if spec is None:
            raise InvalidArgument(f"model '{model}' has no input '{mapping.input}'")
        requests = [
            InferRequest(
                model,
                {spec.name: tensor_from_json(t, spec, max_batch_size > 0, model)},
                trace_parent=parent,
            )
            for t in request.texts
        ]
        answer = _send_embeddings(send, self._engine, requests, mapping, request.base64)
        await until_disconnect(receive, answer)


async def _send_embeddings(
    send: Send,
    engine: Engine,
    requests: list[InferRequest],
    mapping: OpenAIMapping,
    base64_encoded: bool,
) -> None:
    with shutdown_as_error():
        responses = await asyncio.gather(*(engine.infer(r) for r in requests))
    vectors: list[Array] = []
    tokens: int | None = 0 if mapping.prompt_tokens_output else None
    for response in responses:
        vector = response.outputs.get(mapping.output)
        if vector is None:
            raise InvalidArgument(f"the model gave no output '{mapping.output}'")
        vectors.append(vector)
        counts = response.outputs.get(mapping.prompt_tokens_output or "")
        if tokens is not None and counts is not None:
            tokens += int(counts.sum())
    model = requests[0].model_name
    await _respond(send, 200, embedding_list(model, vectors, base64_encoded, tokens))


async def _send_whole(
    send: Send, answer: Answer, pieces: AsyncIterator[str], outcome: Outcome
) -> None:
    with shutdown_as_error():
        text = "".join([piece async for piece in pieces])
    await _respond(send, 200, answer.whole(text, outcome.finish_reason, outcome.usage()))


async def _chunks(
    answer: Answer, pieces: AsyncIterator[str], outcome: Outcome, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    """The stream's chunks; a chat's opening chunk waits for the first piece, so that an error
    before any text is still answered with its own status."""
    opening = answer.first_chunk()
    async for text in pieces:
        if opening is not None:
            yield opening
            opening = None
        yield answer.piece(text)
    if opening is not None:
        yield opening
    yield answer.last_chunk(outcome.finish_reason)
    if include_usage:
        yield answer.usage_chunk(outcome.usage())


async def _send_events(send: Send, chunks: AsyncIterator[dict[str, Any]]) -> None:
    """Each chunk as a `data:` event, then `data: [DONE]`."""
    await send_events(send, chunks, orjson.dumps, _error_event, b"[DONE]")


def _error_event(error: Exception) -> bytes:
    if not isinstance(error, InferdError):
        raise error  # a bug of ours ends the stream, as any bug ends a response
    return orjson.dumps(error_document(error))


def _expect(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"method {method} not allowed here; use {allowed}")


async def _respond(send: Send, status: int, document: Any) -> None:
    body = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
