"""A traced request's spans as one plain record on the request path, turned into OTLP spans on
the export thread.

The request path only stamps marks and queues records: a `RequestRecord` (the request's span,
with its `decode`, `queue` and `encode` children) and an `ExecutionRecord` (one execution of a
batch). Ids of the children, wall-clock times and the encoded spans are made on the export
thread (`Encoding`), which is the one thread that touches its caches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from inferd.core.tracing import TraceParent
from inferd.core.types import Timestamps
from inferd.metrics import otel_encode as wire
from inferd.metrics.otel_context import traceparent
from inferd.metrics.otel_layout import RequestLayout


class Record(Protocol):
    def spans(self) -> int:
        """How many spans the record makes."""

    def encode(self, encoding: Encoding, out: list[bytes], whole: bool) -> None:
        """Adds its spans to `out`: a piece each, or when `whole` (they all go in one export
        request) maybe all in one."""


Put = Callable[[Record], None]


class Encoding:
    """What records need to become spans: ids for the spans they did not name, wall-clock
    time, and the encoded names and model attributes seen so far."""

    def __init__(self, span_id: Callable[[], int]) -> None:
        self.span_id = span_id
        # Monotonic ns + this = wall-clock ns (close enough over a server's life for a trace).
        self.wall = time.time_ns() - time.monotonic_ns()
        self._named: dict[tuple[str, int], bytes] = {}
        self._attributes: dict[tuple[bytes, str], bytes] = {}
        self._counts: dict[tuple[str, int], bytes] = {}
        self._layouts: dict[tuple[str, str, str, int, bool], RequestLayout] = {}

    def new_id(self) -> bytes:
        return self.span_id().to_bytes(8, "big")

    def named(self, name: str, kind: int = wire.INTERNAL) -> bytes:
        encoded = self._named.get((name, kind))
        if encoded is None:
            encoded = self._named[name, kind] = wire.name_and_kind(name, kind)
        return encoded

    def attribute(self, key: bytes, value: str) -> bytes:
        """A string attribute whose values repeat (a model's name, version, instance)."""
        encoded = self._attributes.get((key, value))
        if encoded is None:
            encoded = self._attributes[key, value] = wire.string_attribute(key, value)
        return encoded

    def count(self, key: str, value: int) -> bytes:
        """An integer attribute whose values repeat (a batch's size)."""
        encoded = self._counts.get((key, value))
        if encoded is None:
            encoded = self._counts[key, value] = wire.attributes({key: value})
        return encoded

    def layout(
        self, name: str, model_name: str, model_version: str, id_size: int, remote: bool
    ) -> RequestLayout | None:
        """The layout of a frontend's request's four spans; None for a request id too long to
        be worth one (each length is a layout)."""
        if id_size > _LAID_OUT_ID_SIZE:
            return None
        key = (name, model_name, model_version, id_size, remote)
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layouts[key] = RequestLayout(
                self.named(name, wire.SERVER),
                self.attribute(_MODEL_NAME, model_name),
                _REQUEST_ID,
                id_size,
                self.attribute(_MODEL_VERSION, model_version),
                remote,
            )
        return layout


_LAID_OUT_ID_SIZE = 64  # bytes (a UUID's text is 36)
_MODEL_NAME = wire.attribute_key("model_name")
_MODEL_VERSION = wire.attribute_key("model_version")
_REQUEST_ID = wire.attribute_key("request_id")
_INSTANCE = wire.attribute_key("instance")
_DECODE = wire.name_and_kind("decode", wire.INTERNAL)
_QUEUE = wire.name_and_kind("queue", wire.INTERNAL)
_ENCODE = wire.name_and_kind("encode", wire.INTERNAL)
_COMPUTE_EVENTS = wire.EventPair("COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START")


class RequestRecord:
    """A traced request's span (its `RequestSpan`): from its arrival to its answer (the
    frontend's `responded`, or the engine's finish for a request no frontend started)."""

    __slots__ = (
        "decoded",
        "error",
        "extra",
        "frontend",
        "model_name",
        "model_version",
        "name",
        "parent_id",
        "put",
        "queued",
        "request_id",
        "sampled",
        "sent",
        "span_id",
        "start",
        "state",
        "stop",
        "timestamps",
        "trace_id",
        "unqueued",
    )

    def __init__(
        self,
        put: Put,
        name: str,
        model_name: str,
        request_id: str,
        timestamps: Timestamps,
        frontend: bool,
        ids: tuple[int, int, int],
        sampled: bool,
        state: str,
        extra: Mapping[str, Any] | None,
    ) -> None:
        self.put = put
        self.name = name
        self.model_name = model_name
        self.request_id = request_id
        self.timestamps = timestamps
        self.frontend = frontend
        self.trace_id, self.span_id, self.parent_id = ids  # parent 0: none
        self.sampled = sampled
        self.state = state
        self.extra = extra
        now = time.monotonic_ns()
        self.start = timestamps.received or now
        self.decoded = now  # a frontend's: decoding ended when the span started
        self.model_version: str | None = None  # None: never reached a model
        self.error = ""
        self.queued = self.unqueued = self.sent = self.stop = 0

    def context(self, via: str) -> TraceParent:
        parent = traceparent(self.trace_id, self.span_id, self.sampled)
        return TraceParent(parent, self.state, via)

    def responded(self) -> None:
        now = time.monotonic_ns()
        if not self.timestamps.sent:  # refused before reaching its model (no such model, ...)
            self.error = "not served"
        self.end(now)

    def end(self, monotonic_ns: int) -> None:
        t = self.timestamps
        self.queued, self.unqueued = t.queued, t.compute_start or t.sent
        self.sent = t.sent
        self.stop = monotonic_ns
        if self.sampled:
            self.put(self)

    def spans(self) -> int:
        return 1 + self.frontend + bool(self.queued) + self._encoded()

    def _encoded(self) -> bool:
        return self.frontend and not self.error

    def encode(self, encoding: Encoding, out: list[bytes], whole: bool) -> None:
        if whole and self._laid_out(encoding, out):
            return
        wall = encoding.wall
        head = b"\x0a\x10" + self.trace_id.to_bytes(16, "big")
        if self.state:
            head += wire.trace_state(self.state)
        own = self.span_id.to_bytes(8, "big")
        rest = encoding.attribute(_MODEL_NAME, self.model_name) + wire.string_attribute(
            _REQUEST_ID, self.request_id
        )
        if self.model_version is not None:
            rest += encoding.attribute(_MODEL_VERSION, self.model_version)
        if self.extra:
            rest += wire.attributes(self.extra)
        if self.error:
            rest += wire.error(self.error)
        if self.parent_id:
            ids, flags = wire.span_ids(own, self.parent_id.to_bytes(8, "big")), wire.REMOTE
        else:
            ids, flags = wire.span_ids(own, None), wire.LOCAL
        named = encoding.named(self.name, wire.SERVER if self.frontend else wire.INTERNAL)
        start, stop = self.start + wall, self.stop + wall
        span, local = wire.span, wire.LOCAL
        out.append(span(head, ids, named, start, stop, rest, flags))
        under = b"\x22\x08" + own  # the children's parent_span_id field
        if self.frontend:
            ids = b"\x12\x08" + encoding.new_id() + under
            out.append(span(head, ids, _DECODE, start, self.decoded + wall, b"", local))
        if self.queued:
            ids = b"\x12\x08" + encoding.new_id() + under
            queued, unqueued = self.queued + wall, self.unqueued + wall
            out.append(span(head, ids, _QUEUE, queued, unqueued, b"", local))
        if self._encoded():
            ids = b"\x12\x08" + encoding.new_id() + under
            out.append(span(head, ids, _ENCODE, self.sent + wall, stop, b"", local))

    def _laid_out(self, encoding: Encoding, out: list[bytes]) -> bool:
        """Adds its spans in one piece as its kind's `RequestLayout` makes them, if it is of the
        usual kind (four spans, nothing beyond the model's attributes); else says it is not."""
        if not self.queued or not self._encoded() or self.state or self.extra:
            return False
        version = self.model_version
        request_id = self.request_id.encode()
        if version is None:
            return False
        layout = encoding.layout(
            self.name, self.model_name, version, len(request_id), bool(self.parent_id)
        )
        if layout is None:
            return False
        wall, new_id = encoding.wall, encoding.new_id
        out.append(
            layout.spans((
                self.trace_id.to_bytes(16, "big"), self.span_id.to_bytes(8, "big"),
                self.parent_id.to_bytes(8, "big"), new_id(), new_id(), new_id(), request_id,
                self.start + wall, self.stop + wall, self.decoded + wall, self.queued + wall,
                self.unqueued + wall, self.sent + wall,
            ))
        )  # fmt: skip
        return True


class ExecutionRecord:
    """One execution of a batch: a span under its first traced request's span, linked to
    each traced request's span."""

    __slots__ = ("batch_size", "instance", "marks", "model_name", "model_version", "requests")

    def __init__(
        self,
        model_name: str,
        model_version: str,
        batch_size: int,
        compute: Timestamps,
        instance: str,
        requests: list[RequestRecord],
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.batch_size = batch_size
        # The batch's compute marks: start, inputs gathered, outputs made, end.
        self.marks = (
            compute.compute_start,
            compute.compute_input_end,
            compute.compute_output_start,
            compute.compute_end,
        )
        self.instance = instance
        self.requests = requests

    def spans(self) -> int:
        return 1

    def encode(self, encoding: Encoding, out: list[bytes], whole: bool) -> None:
        wall = encoding.wall
        first = self.requests[0]
        head = wire.trace_head(first.trace_id.to_bytes(16, "big"), wire.trace_state(first.state))
        start, inputs, outputs, end = (mark + wall for mark in self.marks)
        link = wire.link
        rest = b"".join(
            (
                encoding.attribute(_MODEL_NAME, self.model_name),
                encoding.attribute(_MODEL_VERSION, self.model_version),
                encoding.count("batch_size", self.batch_size),
                encoding.attribute(_INSTANCE, self.instance),
                _COMPUTE_EVENTS.encode(inputs, outputs),
                *[link(r.trace_id.to_bytes(16, "big"), r.span_id.to_bytes(8, "big"))
                  for r in self.requests],
            )
        )  # fmt: skip
        ids = wire.span_ids(encoding.new_id(), first.span_id.to_bytes(8, "big"))
        named = encoding.named(f"execute {self.model_name}")
        out.append(wire.span(head, ids, named, start, end, rest, wire.LOCAL))
