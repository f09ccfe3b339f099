"""The KServe V2 HTTP/REST frontend: a raw ASGI app (no framework on the infer path).

Routes (`{m}` a model name, `[/versions/{v}]` optional):
    GET  /v2                               server metadata
    GET  /v2/health/live | /v2/health/ready
    GET  /v2/models/{m}[/versions/{v}]     model metadata
    GET  /v2/models/{m}[/versions/{v}]/ready
    GET  /v2/models/{m}[/versions/{v}]/config
    POST /v2/models/{m}[/versions/{v}]/infer
    POST /v2/models/{m}[/versions/{v}]/generate | generate_stream   (generate extension)
    POST /v2/repository/index
    POST /v2/repository/models/{m}/load | unload   (explicit model control mode)
    GET  /v2/models[/{m}[/versions/{v}]]/stats      (statistics extension)
    GET|POST /v2/trace/setting, /v2/models/{m}/trace/setting   (trace extension)
    GET|POST /v2/logging                   (logging extension)
    GET|POST /v2/systemsharedmemory/... and /v2/cudasharedmemory/...   (http/shared_memory.py)
    /v1/...                                the OpenAI-compatible API (frontends/openai/)

Each route belongs to one of Triton's API groups (frontends/restricted.py), named where it is
dispatched; a restricted group's routes answer 403 without the group's header.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from inferd import __version__
from inferd.core.errors import (
    DecoupledModel,
    InferdError,
    InvalidArgument,
    NotFound,
    Unsupported,
)
from inferd.core.types import InferRequest, InferResponse
from inferd.engine.api import ModelMetadata
from inferd.engine.engine import Engine
from inferd.frontends.http import shared_memory as shm_routes
from inferd.frontends.http.asgi import (
    DisconnectWatcher,
    Receive,
    Scope,
    Send,
    shutdown_as_error,
    shutting_down,
    until_disconnect,
)
from inferd.frontends.http.binary_answers import BinaryAnswers
from inferd.frontends.http.body import ClientDisconnected, header_int, read_body
from inferd.frontends.http.codec import decode_infer_request, loads
from inferd.frontends.http.errors import http_status
from inferd.frontends.http.generate import (
    decode_generate_request,
    encode_generate_response,
    responses_with_outputs,
)
from inferd.frontends.http.hosts import AllowedHosts
from inferd.frontends.http.known_headers import KnownHeaders
from inferd.frontends.http.model_control import load_request
from inferd.frontends.http.raw_request import decode_raw_request
from inferd.frontends.http.runtime_settings import TRACE, log_answer, trace_answer
from inferd.frontends.http.sse import send_event_stream
from inferd.frontends.http.statistics import statistics_document, statistics_target
from inferd.frontends.http.trace_context import client_trace
from inferd.frontends.identity import DEFAULT_SERVER_NAME, extensions
from inferd.frontends.load_errors import load_failure
from inferd.frontends.openai.routes import OpenAIRoutes
from inferd.frontends.restricted import Forbidden, Restrictions
from inferd.frontends.shared_memory import DISABLED, SharedMemoryRegistry
from inferd.frontends.trace_models import check_traced_model

if TYPE_CHECKING:
    from inferd.frontends.http.express import Exchange

logger = logging.getLogger(__name__)

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"
HEADER_LENGTH = b"inference-header-content-length"

Headers = list[tuple[bytes, bytes]]
# Answers a request: status, body, content type and any further headers. The ASGI path's sends
# two ASGI messages; the express lane's (http/express.py) writes the bytes itself.
ExtraHeaders = tuple[tuple[bytes, bytes], ...]  # hashable: the express lane keys on them
Respond = Callable[[int, bytes, bytes, ExtraHeaders | None], Awaitable[None]]


class MethodNotAllowed(InvalidArgument):
    pass


class HttpFrontend:
    """ASGI app serving the V2 protocol for one engine."""

    def __init__(
        self,
        engine: Engine,
        max_body_bytes: int = 256 * 1024 * 1024,
        shared_memory: SharedMemoryRegistry = DISABLED,
        server_name: str = DEFAULT_SERVER_NAME,
        restrictions: Restrictions | None = None,
        allowed_hosts: AllowedHosts | None = None,
    ) -> None:
        self._engine = engine
        self._hosts = allowed_hosts or AllowedHosts(["*"])
        self._restrictions = dict(restrictions or {})
        self._max_body_bytes = max_body_bytes
        self._shared_memory = shared_memory
        offered = [
            "binary_tensor_data",
            "generate",
            *extensions(shared_memory, engine.statistics_enabled, engine.controls),
        ]
        self._server_metadata = orjson.dumps(
            {"name": server_name, "version": __version__, "extensions": offered}
        )
        self._openai = OpenAIRoutes(engine, self._read_request_body)
        self._watcher = DisconnectWatcher()
        self._headers = KnownHeaders()
        self._answers = BinaryAnswers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            self._hosts.check(scope["headers"])
            await self._dispatch(scope, receive, send)
        except ClientDisconnected:
            return
        except Exception as exc:
            await _answer_failure(partial(_respond, send), exc, scope["method"], scope["path"])

    @property
    def max_body_bytes(self) -> int:
        return self._max_body_bytes

    async def express_infer(self, exchange: Exchange) -> None:
        """An infer request read whole by the express lane (http/express.py), whose path
        `infer_target` gave its model and version: answered as the ASGI path answers it."""
        try:
            self._hosts.check(exchange.headers)
            self._guard(exchange.headers, "inference")
            await self._infer_read(
                exchange.fields,
                exchange.body,
                exchange.model,
                exchange.version,
                exchange.received,
                exchange.until_lost,
                exchange.respond,
            )
        except Exception as exc:
            await _answer_failure(exchange.respond, exc, "POST", exchange.path)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = _path_parts(scope)
        if parts and parts[0] == "v1":
            self._guard(scope["headers"], "inference")
            await self._openai.handle(scope, receive, send, parts)
            return
        if not parts or parts[0] != "v2":
            raise NotFound(f"no route for {scope['path']}")
        method = scope["method"]
        if len(parts) >= 3 and parts[1] == "models" and parts[-1] == "stats":
            _expect(method, "GET")
            self._guard(scope["headers"], "statistics")
            await self._statistics_route(send, parts[2:-1])
        elif len(parts) >= 3 and parts[1] == "models":
            await self._model_route(scope, receive, send, method, parts[2:])
        elif parts == ["v2"]:
            _expect(method, "GET")
            self._guard(scope["headers"], "metadata")
            await _respond(send, 200, self._server_metadata)
        elif len(parts) == 3 and parts[1] == "health" and parts[2] in ("live", "ready"):
            _expect(method, "GET")
            self._guard(scope["headers"], "health")
            ok = self._engine.is_live() if parts[2] == "live" else self._engine.is_ready()
            await _respond(send, 200 if ok else 503, b"")
        elif parts[1:] == ["repository", "index"]:
            _expect(method, "POST")
            self._guard(scope["headers"], "model-repository")
            await self._repository_index(scope, receive, send)
        elif len(parts) == 5 and parts[1:3] == ["repository", "models"]:
            _expect(method, "POST")
            self._guard(scope["headers"], "model-repository")
            await self._model_control(scope, receive, send, parts[3], parts[4])
        elif len(parts) >= 3 and parts[1] in shm_routes.KINDS:
            _expect(method, shm_routes.method_for(parts[-1]))
            self._guard(scope["headers"], "shared-memory")
            body = await self._read_body(receive, _headers(scope))
            document = loads(body) if body.strip() else None
            answer = shm_routes.handle(self._shared_memory, parts[1], parts[2:], document)
            await _respond(send, 200, b"" if answer is None else orjson.dumps(answer))
        else:
            await self._runtime_settings(scope, receive, send, parts)

    def _guard(self, headers: Headers, group: str) -> None:
        """Refuse a request to a restricted `group` that lacks the group's header and value."""
        restriction = self._restrictions.get(group)
        if restriction is None:
            return
        name = restriction.header.encode()
        given = next((value for key, value in headers if key == name), None)
        if not restriction.allows(given):
            raise Forbidden(f"This API is restricted, expecting header '{restriction.header}'")

    async def _model_route(
        self, scope: Scope, receive: Receive, send: Send, method: str, rest: list[str]
    ) -> None:
        if tuple(rest[1:]) == TRACE:
            await self._runtime_settings(scope, receive, send, ["v2", "models", *rest])
            return
        model, version, action = _model_action(rest)
        if action == "infer":
            _expect(method, "POST")
            self._guard(scope["headers"], "inference")
            await self._infer(scope, receive, send, model, version)
        elif action in ("generate", "generate_stream"):
            _expect(method, "POST")
            self._guard(scope["headers"], "inference")
            await self._generate(scope, receive, send, model, version, action)
        elif action == "ready":
            _expect(method, "GET")
            self._guard(scope["headers"], "health")
            ready = self._engine.model_ready(model, version)  # unknown model or version: 404
            await _respond(send, 200 if ready else 400, b"")
        elif action == "config":
            _expect(method, "GET")
            self._guard(scope["headers"], "model-config")
            config = self._engine.model_config_json(model, version)
            await _respond(send, 200, orjson.dumps(config))
        elif action == "":
            _expect(method, "GET")
            self._guard(scope["headers"], "metadata")
            metadata = self._engine.model_metadata(model, version)
            await _respond(send, 200, orjson.dumps(_metadata_json(metadata)))
        else:
            raise NotFound(f"no route for {scope['path']}")

    async def _infer(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str
    ) -> None:
        received = time.monotonic_ns()
        headers = _headers(scope)
        body = await self._read_body(receive, headers)
        respond = partial(_respond, send)
        await self._infer_read(headers, body, model, version, received, receive, respond)

    async def _infer_read(
        self,
        headers: dict[bytes, bytes],
        body: bytes,
        model: str,
        version: str,
        received: int,
        receive: Receive,
        respond: Respond,
    ) -> None:
        """An infer request whose body is read: `receive` tells its client's disconnect."""
        read = time.monotonic_ns()
        header = headers.get(HEADER_LENGTH)
        header_length = header_int(header) if header is not None else None
        if header_length == 0:
            inputs, max_batch_size = self._engine.input_specs(model, version)
            request = decode_raw_request(body, inputs, max_batch_size, model, version)
        elif header_length is not None:
            decode = self._headers.decode
            request = decode(body, header_length, model, version, self._shared_memory)
        else:
            request = decode_infer_request(body, None, model, version, self._shared_memory)
        _read_over_http(request, received, read)
        request.timestamps.sends = True  # stamped by `_answer_infer`
        tracing = self._engine.tracing
        if tracing is not None and tracing.active:
            request.trace_parent = client_trace(headers.items())
            tracing.start(request, frontend=True)
        try:
            await self._answer_infer(receive, respond, request)
        finally:
            if request.span is not None:  # traced: its span ends once answered
                request.span.responded()

    async def _answer_infer(
        self, receive: Receive, respond: Respond, request: InferRequest
    ) -> None:
        # A client that disconnects during a long inference cancels it: it leaves its queue,
        # or the model sees it cancelled.
        task = self._watcher.start(receive)
        try:
            response = await self._engine.infer(request)
        except DecoupledModel:
            raise Unsupported(
                "HTTP end point doesn't support models with decoupled transaction policy"
            ) from None
        except asyncio.CancelledError:
            if self._watcher.disconnected(task):
                return  # nobody to answer
            raise shutting_down() from None
        finally:
            self._watcher.stop(task)
        timestamps = request.timestamps
        if not timestamps.trace_id:
            payload, json_length = self._answers.encode(response, request, self._shared_memory)
            await _send_answer(respond, payload, json_length)
            return
        try:  # traced: its send stamped (Triton's HTTP_SEND_*), then its trace is complete
            payload, json_length = self._answers.encode(response, request, self._shared_memory)
            timestamps.send_start = time.monotonic_ns()
            await _send_answer(respond, payload, json_length)
            timestamps.send_end = time.monotonic_ns()
        finally:
            self._engine.request_sent(request)

    async def _generate(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str, action: str
    ) -> None:
        """Triton's generate extension; the answer stops when its client disconnects."""
        received = time.monotonic_ns()
        headers = _headers(scope)
        body = await self._read_body(receive, headers)
        read = time.monotonic_ns()
        inputs, max_batch_size = self._engine.input_specs(model, version)
        request = decode_generate_request(body, inputs, max_batch_size, model, version)
        _read_over_http(request, received, read)
        if self._engine.tracing is not None:  # the engine spans it, in the client's trace
            request.trace_parent = client_trace(headers.items())
        responses = self._engine.stream(request)
        try:
            if action == "generate_stream":
                await until_disconnect(receive, send_event_stream(send, responses))
            else:
                answered = responses_with_outputs(responses)
                await until_disconnect(receive, _send_one_response(send, answered))
        finally:
            if isinstance(responses, AsyncGenerator):  # stop a stream left before its end
                await responses.aclose()

    async def _repository_index(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._read_body(receive, _headers(scope))
        document = loads(body) if body.strip() else {}
        if not isinstance(document, dict):
            raise InvalidArgument("the repository index request must be a JSON object")
        rows = self._engine.repository_index(ready_only=bool(document.get("ready", False)))
        index = [
            {"name": row.name, "state": row.state.value}
            | ({"version": row.version} if row.version else {})
            | ({"reason": row.reason} if row.reason else {})
            for row in rows
        ]
        await _respond(send, 200, orjson.dumps(index))

    async def _statistics_route(self, send: Send, rest: list[str]) -> None:
        model, version = statistics_target(rest)
        snapshot = self._engine.model_statistics(model, version)
        await _respond(send, 200, orjson.dumps(statistics_document(snapshot)))

    async def _runtime_settings(
        self, scope: Scope, receive: Receive, send: Send, parts: list[str]
    ) -> None:
        """The trace (`/v2[/models/{m}]/trace/setting`) and logging (`/v2/logging`) settings;
        404 for any other path."""
        trace = parts[1:] == list(TRACE) or (len(parts) == 5 and parts[1] == "models")
        if not trace and parts[1:] != ["logging"]:
            raise NotFound(f"no route for {scope['path']}")
        self._guard(scope["headers"], "logging" if parts[1] == "logging" else "trace")
        document = None
        if scope["method"] == "POST":
            body = await self._read_body(receive, _headers(scope))
            document = loads(body) if body.strip() else {}
        else:
            _expect(scope["method"], "GET")
        controls = self._engine.controls
        if parts[1] == "logging":
            answer = log_answer(controls.logging, document)
        else:
            model = parts[2] if len(parts) == 5 else ""
            if model:
                check_traced_model(self._engine, model)  # an unknown model: 404
            answer = trace_answer(controls.trace, model, document)
        await _respond(send, 200, orjson.dumps(answer))

    async def _model_control(
        self, scope: Scope, receive: Receive, send: Send, model: str, action: str
    ) -> None:
        if action not in ("load", "unload"):
            raise NotFound(f"no route for {scope['path']}")
        body = await self._read_body(receive, _headers(scope))
        document = loads(body) if body.strip() else None
        if action == "load":
            with load_failure(model):
                await self._engine.control_load(model, *load_request(document))
        else:
            await self._engine.control_unload(model)
        await _respond(send, 200, b"")

    async def _read_request_body(self, scope: Scope, receive: Receive) -> bytes:
        return await self._read_body(receive, _headers(scope))

    async def _read_body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        return await read_body(receive, headers, self._max_body_bytes)


def infer_target(raw_path: bytes) -> tuple[str, str] | None:
    """The model and version an infer route's path names; None for any other path, and for
    one the router refuses (an empty segment)."""
    if not raw_path.startswith(b"/v2/models/") or b"//" in raw_path:
        return None
    parts = _path_segments(raw_path)
    if len(parts) < 4:
        return None
    model, version, action = _model_action(parts[2:])
    return (model, version) if action == "infer" else None


def _path_parts(scope: Scope) -> list[str]:
    raw = scope.get("raw_path") or scope["path"].encode()
    if b"//" in raw:  # an empty name or version would select "every model" or "the latest"
        raise InvalidArgument(f"empty segment in path '{scope['path']}'")
    return _path_segments(raw)


def _path_segments(raw: bytes) -> list[str]:
    """Path segments, each percent-decoded on its own: an encoded "/" stays inside its segment,
    so a model named "../x" reaches the handler (and is refused there) instead of routing."""
    parts = raw.decode("latin-1").strip("/").split("/")
    return [unquote(part) for part in parts] if b"%" in raw else parts


def _model_action(rest: list[str]) -> tuple[str, str, str | None]:
    """`{m}[/versions/{v}][/{action}]`: model, version ("" for the latest) and action ("" for
    the model's metadata, None for a path with more segments than that)."""
    model, version = rest[0], ""
    rest = rest[1:]
    if len(rest) >= 2 and rest[0] == "versions":
        version, rest = rest[1], rest[2:]
    action = rest[0] if len(rest) == 1 else "" if not rest else None
    return model, version, action


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope["headers"])


def _expect(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"method {method} not allowed here; use {allowed}")


def _metadata_json(metadata: ModelMetadata) -> dict[str, Any]:
    def tensors(items: list[Any]) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": t.shape} for t in items]

    return {
        "name": metadata.name,
        "versions": metadata.versions,
        "platform": metadata.platform,
        "inputs": tensors(metadata.inputs),
        "outputs": tensors(metadata.outputs),
        # inferd's addition: where each instance runs (clients ignore fields they do not know).
        "instances": [
            {"name": i.name, "kind": i.kind, "device": i.device} for i in metadata.instances
        ],
    }


async def _send_one_response(send: Send, responses: AsyncIterator[InferResponse]) -> None:
    """`generate`: the one response of the request; a model giving more (the stream stops at
    the second) or none is refused with Triton's error."""
    received: list[InferResponse] = []
    with shutdown_as_error():
        async for response in responses:
            received.append(response)
            if len(received) > 1:
                break
    if len(received) != 1:
        raise InvalidArgument(
            "generate expects model to produce exactly 1 response, use generate stream for "
            "model that generates various number of responses"
        )
    await _respond(send, 200, encode_generate_response(received[0]))


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    extra_headers: ExtraHeaders | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_answer(respond: Respond, payload: bytes, json_length: int | None) -> None:
    """An infer answer: JSON, or with binary outputs after a JSON header of `json_length`."""
    if json_length is None:
        await respond(200, payload, JSON, None)
    else:
        extra = ((b"inference-header-content-length", b"%d" % json_length),)
        await respond(200, payload, OCTET_STREAM, extra)


async def _answer_failure(respond: Respond, exc: Exception, method: str, path: str) -> None:
    """The answer to a request that raised `exc`: its error, or a 500 for a bug of ours (logged;
    the server keeps serving)."""
    if isinstance(exc, InferdError):
        status = 405 if isinstance(exc, MethodNotAllowed) else http_status(exc)
        await respond(status, orjson.dumps({"error": exc.message}), JSON, None)
    else:
        logger.error("unhandled error on %s %s", method, path, exc_info=exc)
        await respond(500, orjson.dumps({"error": f"internal error: {exc!r}"}), JSON, None)


def _read_over_http(request: InferRequest, received: int, read: int) -> None:
    """Its marks of the wire: reading began at `received` and ended at `read`."""
    timestamps = request.timestamps
    timestamps.received = received
    timestamps.read = read
    timestamps.protocol = "HTTP"
