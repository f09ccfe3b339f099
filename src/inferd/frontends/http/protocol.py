"""uvicorn's httptools protocol with the server's error contract on the connection level:
a request that does not parse as HTTP, or whose request line and headers pass
`--http-max-header-bytes`, is answered with a JSON `{"error": ...}` (400, 431) and the
connection closed, where uvicorn would answer plain text. A request that parses is uvicorn's
to parse and hand to the app, but for an infer request to the HTTP frontend, which takes the
express lane (http/express.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from inferd.core.running_loop import running_task
from inferd.frontends.http.answer_groups import AnswerGroups
from inferd.frontends.http.app import HttpFrontend, infer_target
from inferd.frontends.http.express import Exchange
from inferd.frontends.kept_headers import keep

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application

HEADER_LIMIT_FLAG = "--http-max-header-bytes"
_REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}
_PLAIN_BODY = (b"identity", None)  # Content-Encoding values read without inflating
MAX_ROUTES = 256  # request targets whose express route is kept, per server

logger = logging.getLogger(__name__)


class HeaderTooLarge(Exception):
    pass


def protocol_class(
    max_header_bytes: int, express: HttpFrontend | None = None
) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's `http` setting, with this header limit; with `express`
    (the app uvicorn serves, bare), its infer requests take the express lane."""
    return type(
        "JsonErrorProtocol",
        (_JsonErrorProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "express": express,
            "_routes": {},
            "_answer_groups": AnswerGroups(),
        },
    )


def express_route(url: bytes) -> tuple[tuple[str, str], str] | None:
    """The model and version an infer request's target names, and its path; None for any
    other target."""
    raw_path = httptools.parse_url(url).path
    target = infer_target(raw_path)
    return None if target is None else (target, raw_path.decode("latin-1"))


class _JsonErrorProtocol(HttpToolsProtocol):
    max_header_bytes = 0
    express: HttpFrontend | None = None
    _head_bytes = 0
    _refusal: tuple[int, str] | None = None
    _reading: Exchange | None = None  # an express request whose body is still arriving
    _shutting_down = False  # the server's graceful shutdown began (`shutdown`)
    _refused: bytes | None = None  # the answer to bytes that did not parse, once they came
    # The request being answered (express or ASGI): uvicorn's `self.cycle` is the newest,
    # which is another one when requests are pipelined behind it.
    _running: Exchange | RequestResponseCycle | None = None
    # The keep-alive timeout, armed lazily (see `on_response_complete`): when the last answer
    # went out with no byte received since (None: a request is on its way), and the timer.
    _answered_at: float | None = None
    _idle_timer: asyncio.TimerHandle | None = None
    # `express_route` of each request target seen, shared by the server's connections: a
    # client sends the same few targets request after request (routing one: about 2 us).
    _routes: ClassVar[dict[bytes, tuple[tuple[str, str], str] | None]] = {}
    # The server's express answers held to leave in groups (http/answer_groups.py): those
    # held leave before the protocol itself writes on one's connection (a refusal) or closes
    # it (graceful shutdown).
    _answer_groups: ClassVar[AnswerGroups]

    # The base class's callbacks are called directly rather than through super(): these run
    # for every header of every request.
    def data_received(self, data: bytes) -> None:
        self._answered_at = None
        HttpToolsProtocol.data_received(self, data)

    def on_message_begin(self) -> None:
        """uvicorn's, less its ASGI scope (a dict and a copy of the app state per request),
        which `on_headers_complete` builds only for a request that goes the ASGI way."""
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    # `on_url` and `on_header` do uvicorn's part themselves: a call less per header.
    def on_url(self, url: bytes) -> None:
        self.url += url
        # self.url starts empty with each request, so this also resets the count.
        self._head_bytes = len(self.url)
        if self._head_bytes > self.max_header_bytes:
            self._refuse_head()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > self.max_header_bytes:
            self._refuse_head()
        name = name.lower()
        # llhttp keeps a value's trailing whitespace, which is not part of it (RFC 9110, 5.5).
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def _refuse_head(self) -> None:
        # Raising inside a parser callback makes httptools stop and report a parser error,
        # which uvicorn answers through send_400_response below.
        limit = self.max_header_bytes
        message = f"request line and headers are larger than the {limit}-byte limit"
        self._refusal = (431, f"{message} ({HEADER_LIMIT_FLAG})")
        raise HeaderTooLarge

    def send_400_response(self, msg: str) -> None:
        if self._refused is not None:  # bytes after those refused, while waiting to say so
            return
        status, error = self._refusal or (400, "malformed HTTP request")
        body = orjson.dumps({"error": error})
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        defaults = self.server_state.default_headers
        head.extend(name + b": " + value + b"\r\n" for name, value in defaults)
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self._refused = b"".join(head) + body
        if self._answering_before_refusal():
            # Answers go out in order: this one once those of the requests before it have.
            self.flow.pause_reading()
            return
        self._end_refused()

    def _answering_before_refusal(self) -> bool:
        """Whether requests before the bad bytes are still to be answered. A queued request
        whose body they cut leaves the queue, the refusal its answer: it would wait for the
        rest of its body forever."""
        newest = self.cycle
        if isinstance(newest, RequestResponseCycle) and newest.more_body:
            if not self.pipeline or self.pipeline[0][0] is not newest:
                return False  # running: the refusal answers it now
            self.pipeline.popleft()
        running = self._running
        return running is not None and not running.response_complete and self._reading is None

    def _end_refused(self) -> None:
        assert self._refused is not None
        self._answer_groups.release(self.transport)  # the answer before it may be held
        self.transport.write(self._refused)
        self.transport.close()

    def on_headers_complete(self) -> None:
        exchange = self._express_exchange() if self.express is not None else None
        if exchange is None:
            self._begin_scope()
            HttpToolsProtocol.on_headers_complete(self)
            return
        # uvicorn's slot for the request in flight: see http/express.py.
        self.cycle = exchange  # type: ignore[assignment]
        self._reading = self._running = exchange

    def _begin_scope(self) -> None:
        """uvicorn's scope of the request whose headers are in, as its `on_message_begin`
        would have begun it."""
        url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
        HttpToolsProtocol.on_message_begin(self)
        self.url, self.headers, self.expect_100_continue = url, headers, expect_100_continue
        self.scope["headers"] = headers

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._running = cycle
        HttpToolsProtocol._start_asgi_task(self, cycle, app)

    def on_body(self, body: bytes) -> None:
        if self._reading is None:
            HttpToolsProtocol.on_body(self, body)
        else:
            self._reading.chunks.append(body)

    def on_message_complete(self) -> None:
        exchange = self._reading
        if exchange is None:
            HttpToolsProtocol.on_message_complete(self)
            return
        self._reading = None
        exchange.read()
        self._answer_groups.in_flight += 1
        shutting_down = self._shutting_down
        task = self.loop.create_task(self._answer(exchange, counts_itself_out=not shutting_down))
        if shutting_down:
            # The shutdown's end may cancel the task before its first step, when its own
            # `finally` never runs. A task made before the shutdown began has run its first
            # step long before then (the grace is at least the shutdown's first 0.1 s sleep).
            task.add_done_callback(self._answer_ended)
        # uvicorn's graceful shutdown waits for (and at its end cancels) the tasks here.
        self.tasks.add(task)

    def _answer_ended(self, task: asyncio.Task[None]) -> None:
        """An express request's task is done: it leaves the tasks uvicorn's shutdown waits
        for, and the count in flight."""
        self.tasks.discard(task)
        self._answer_groups.in_flight -= 1

    def _express_exchange(self) -> Exchange | None:
        """An exchange for the request whose headers are in, if it takes the express lane: an
        infer request, alone on its connection (a request in flight before it: it queues the
        ASGI way), with a plain body of a declared length (never chunked: llhttp refuses both
        framings at once) within the frontend's limit (the ASGI path refuses a larger one
        before reading it). uvicorn runs with no per-request options that the lane would skip
        (access log, concurrency limit: cli/listeners.py)."""
        assert self.express is not None
        if (
            self.parser.get_method() != b"POST"
            or self.expect_100_continue
            or not (self.cycle is None or self.cycle.response_complete)
            or self.parser.should_upgrade()
        ):
            return None
        url = self.url
        routes = self._routes
        if url in routes:
            route = routes[url]
        else:
            route = express_route(url)
            keep(routes, url, route, MAX_ROUTES)
        if route is None:
            return None
        target, path = route
        fields = dict(self.headers)
        length = fields.get(b"content-length")
        if (
            length is None
            or not length.isdigit()
            or int(length) > self.express.max_body_bytes
            or fields.get(b"content-encoding") not in _PLAIN_BODY
        ):
            return None
        # llhttp keeps an HTTP/1.0 connection alive only for a `connection: keep-alive`
        # header, so without one the version (a string built per call: 0.5 us) need not be
        # asked; HTTP/1.0 closes after its answer, as uvicorn has it.
        keep_alive = self.parser.should_keep_alive() and (
            b"connection" not in fields or self.parser.get_http_version() != "1.0"
        )
        return Exchange(
            self.transport,
            self.flow,
            self.server_state.default_headers,
            self.headers,
            fields,
            target,
            path,
            keep_alive=keep_alive,
            on_response=self.on_response_complete,
            received=time.monotonic_ns(),
            answer_groups=self._answer_groups,
        )

    def on_response_complete(self) -> None:
        """uvicorn's, but for its keep-alive timeout: uvicorn arms a timer after each answer
        and cancels it at the next request's first bytes (about 2 us of the loop per request).
        Here the answer notes its time, and one timer per idle period checks, when due, whether
        the connection has been idle for the timeout since its last answer (and closes it, as
        uvicorn's would), or sets itself again for when it would be."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        if self._refused is not None:
            self._end_refused()
            return
        self._answered_at = now = self.loop.time()
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_at(now + self.timeout_keep_alive, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        answered_at = self._answered_at
        if answered_at is None:  # a request came since; its answer sets the timer again
            return
        due = answered_at + self.timeout_keep_alive
        if self.loop.time() < due:
            self._idle_timer = self.loop.call_at(due, self._idle_check)
        else:
            self.timeout_keep_alive_handler()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown closes a connection whose answer is complete: a held
        answer leaves first."""
        self._shutting_down = True
        self._answer_groups.release(self.transport)
        HttpToolsProtocol.shutdown(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        # uvicorn tells only its newest request that the client is gone; the running one,
        # with requests pipelined behind it, must know too: its model sees it cancelled,
        # and its answer is not written to the closed transport (an error under uvloop).
        running = self._running
        if running is not None and running is not self.cycle and not running.response_complete:
            running.disconnected = True
            running.message_event.set()
        HttpToolsProtocol.connection_lost(self, exc)

    async def _answer(self, exchange: Exchange, counts_itself_out: bool) -> None:
        """An express request's task. It leaves the tasks and the count in flight at its own
        end, where a done callback would cost a loop handle (0.4-0.8 us) per request; but
        for one made while the connection shuts down (`on_message_complete`)."""
        assert self.express is not None
        try:
            await self.express.express_infer(exchange)
        except BaseException as exc:  # cancelled past the shutdown grace, as uvicorn's cycle
            logger.error("express infer lane: %r on %s", exc, exchange.path)
            await exchange.fail()
        finally:
            if counts_itself_out:
                self._answer_ended(running_task())
