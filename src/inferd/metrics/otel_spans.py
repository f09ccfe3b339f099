"""OpenTelemetry spans of requests: the server's `RequestTracing` in `opentelemetry` mode.

A traced request is one span from its arrival to its answer (named `infer <model>`; an
ensemble's step `ensemble step <model>`, a model's call `bls <model>`), with child spans for
what the frontend decoded (`decode`), the wait in its model's queue (`queue`) and the encoding
of its answer (`encode`). Each execution of a batch holding traced requests is one span
(`execute <model>`, with the batch size and instance as attributes) under its first traced
request's span and linked to every traced request's span. Which requests are traced is the
trace settings' call (`TritonTracer.sample`): the rate, count and level of the model's scope.

Marks are the engine's monotonic ones, turned into wall-clock time as spans want. Spans are
made on the event loop, once over (`otel_finished.py`); the SDK's batch processor exports
them from its own thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status

from inferd.core.observer import FailureReason
from inferd.core.tracing import TRACEPARENT, TRACESTATE, TraceParent
from inferd.core.types import InferRequest, Timestamps
from inferd.metrics.otel_finished import FinishedSpans

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from inferd.metrics.triton_trace import TritonTracer

_PROPAGATOR = TraceContextTextMapPropagator()


class OtelTracing:
    """Spans of the requests the trace settings (`sampler`) pick, made with `finished`."""

    def __init__(self, finished: FinishedSpans, sampler: TritonTracer) -> None:
        self._finished = finished
        self._sampler = sampler
        # Monotonic ns + this = wall-clock ns (close enough over a server's life for a trace).
        self._wall = time.time_ns() - time.monotonic_ns()

    @property
    def active(self) -> bool:
        return self._sampler.spans_active

    def start(self, request: InferRequest, frontend: bool) -> None:
        parent = request.trace_parent
        if not self._sampler.sample(request.model_name, parent is not None):
            if frontend:
                request.span = _NOT_TRACED
            return
        context = None
        if parent is not None:
            carrier = {TRACEPARENT: parent.traceparent, TRACESTATE: parent.tracestate}
            context = _PROPAGATOR.extract(carrier)
        name = f"{parent.via if parent and parent.via else 'infer'} {request.model_name}"
        kind = trace.SpanKind.SERVER if frontend else trace.SpanKind.INTERNAL
        attributes = {"model_name": request.model_name, "request_id": request.id}
        opened = self._finished.open(name, context, kind, attributes)
        now = time.monotonic_ns()
        request.span = traced = _Span(self, name, kind, opened, request.timestamps, frontend)
        if frontend:
            traced.child("decode", traced.start, now + self._wall)

    def finish(
        self, request: InferRequest, model_version: str, failure: FailureReason | None
    ) -> None:
        traced = request.span
        if not isinstance(traced, _Span):
            return
        t = request.timestamps
        traced.attributes["model_version"] = model_version
        if t.queued:
            traced.child("queue", t.queued + self._wall, (t.compute_start or t.sent) + self._wall)
        if failure is not None:
            traced.status = Status(trace.StatusCode.ERROR, failure.value)
        if not traced.frontend:
            traced.end(t.sent)

    def batch_executed(
        self,
        model_name: str,
        model_version: str,
        batch_size: int,
        compute: Timestamps,
        instance: str,
        requests: Sequence[InferRequest],
    ) -> None:
        contexts = [r.span.span_context for r in requests if isinstance(r.span, _Span)]
        if not contexts:
            return
        wall = self._wall
        self._finished.add(
            f"execute {model_name}",
            contexts[0],
            compute.compute_start + wall,
            compute.compute_end + wall,
            {
                "model_name": model_name,
                "model_version": model_version,
                "batch_size": batch_size,
                "instance": instance,
            },
            [trace.Link(c) for c in contexts],
            [
                ("COMPUTE_INPUT_END", compute.compute_input_end + wall),
                ("COMPUTE_OUTPUT_START", compute.compute_output_start + wall),
            ],
        )

    def wall(self, monotonic_ns: int) -> int:
        return monotonic_ns + self._wall

    @property
    def finished(self) -> FinishedSpans:
        return self._finished


class _Span:
    """A traced request's span (`RequestSpan`), made once it ends."""

    __slots__ = (
        "attributes",
        "frontend",
        "kind",
        "name",
        "parent",
        "span_context",
        "start",
        "status",
        "timestamps",
        "tracing",
    )

    def __init__(
        self,
        tracing: OtelTracing,
        name: str,
        kind: trace.SpanKind,
        opened: tuple[trace.SpanContext, trace.SpanContext | None, dict[str, AttributeValue]],
        timestamps: Timestamps,
        frontend: bool,
    ) -> None:
        self.tracing = tracing
        self.name = name
        self.kind = kind
        self.span_context, self.parent, self.attributes = opened
        self.timestamps = timestamps
        self.start = tracing.wall(timestamps.received or time.monotonic_ns())
        self.frontend = frontend
        self.status: Status | None = None

    def context(self, via: str) -> TraceParent:
        c = self.span_context
        traceparent = f"00-{c.trace_id:032x}-{c.span_id:016x}-{c.trace_flags:02x}"
        return TraceParent(traceparent, c.trace_state.to_header(), via)

    def responded(self) -> None:
        now = time.monotonic_ns()
        sent = self.timestamps.sent
        if not sent:  # refused before reaching its model (no such model, a decoupled one)
            self.status = Status(trace.StatusCode.ERROR, "not served")
        elif self.status is None:
            self.child("encode", self.tracing.wall(sent), self.tracing.wall(now))
        self.end(now)

    def child(self, name: str, start: int, end: int) -> None:
        """A child span, from wall-clock `start` to `end`."""
        self.tracing.finished.add(name, self.span_context, start, end)

    def end(self, monotonic_ns: int) -> None:
        end = self.tracing.wall(monotonic_ns)
        finished = self.tracing.finished
        finished.record(
            self.name,
            self.span_context,
            self.parent,
            self.start,
            end,
            self.attributes,
            kind=self.kind,
            status=self.status,
        )


class _NotTraced:
    """The span of a request a frontend asked about that is not traced: the engine does not
    ask (and sample) again."""

    def context(self, via: str) -> TraceParent | None:
        return None

    def responded(self) -> None:
        """Nothing to end."""


_NOT_TRACED = _NotTraced()
