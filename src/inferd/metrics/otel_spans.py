"""OpenTelemetry spans of requests: the server's `RequestTracing` in `opentelemetry` mode.

A traced request is one span from its arrival to its answer (named `infer <model>`; an
ensemble's step `ensemble step <model>`, a model's call `bls <model>`), with child spans for
what the frontend decoded (`decode`), the wait in its model's queue (`queue`) and the encoding
of its answer (`encode`). Each execution of a batch holding traced requests is one span
(`execute <model>`, with the batch size and instance as attributes) under its first traced
request's span and linked to every traced request's span. Which requests are traced is the
trace settings' call (`TritonTracer.sample`): the rate, count and level of the model's scope.

Marks are the engine's monotonic ones, turned into wall-clock time as spans want. Spans are
made on the event loop (the request's with the SDK's tracer, the others already finished:
`otel_finished.py`); the SDK's batch processor exports them from its own thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from inferd.core.observer import FailureReason
from inferd.core.tracing import TRACEPARENT, TRACESTATE, TraceParent
from inferd.core.types import InferRequest, Timestamps
from inferd.metrics.otel_finished import FinishedSpans

if TYPE_CHECKING:
    from inferd.metrics.triton_trace import TritonTracer

_PROPAGATOR = TraceContextTextMapPropagator()


class OtelTracing:
    """Spans of the requests the trace settings pick: the requests' made with `tracer`, their
    parts with `finished`."""

    def __init__(
        self, tracer: trace.Tracer, finished: FinishedSpans, sampler: TritonTracer
    ) -> None:
        self._tracer = tracer
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
        now = time.monotonic_ns()
        start = (request.timestamps.received or now) + self._wall
        attributes = {"model_name": request.model_name, "request_id": request.id}
        span = self._tracer.start_span(
            f"{parent.via if parent and parent.via else 'infer'} {request.model_name}",
            context,
            trace.SpanKind.SERVER if frontend else trace.SpanKind.INTERNAL,
            attributes,
            start_time=start,
        )
        request.span = traced = _Span(span, self, request.timestamps, frontend)
        if frontend:
            traced.child("decode", start, now + self._wall)

    def finish(
        self, request: InferRequest, model_version: str, failure: FailureReason | None
    ) -> None:
        traced = request.span
        if not isinstance(traced, _Span):
            return
        t = request.timestamps
        traced.span.set_attribute("model_version", model_version)
        if t.queued:
            traced.child("queue", t.queued + self._wall, (t.compute_start or t.sent) + self._wall)
        if failure is not None:
            traced.failed = True
            traced.span.set_status(trace.StatusCode.ERROR, failure.value)
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
        spans = [r.span.span for r in requests if isinstance(r.span, _Span)]
        if not spans:
            return
        wall = self._wall
        contexts = [s.get_span_context() for s in spans]
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

    def child(self, parent: trace.Span, name: str, start: int, end: int) -> None:
        """A finished child span of `parent`, from wall-clock `start` to `end`."""
        self._finished.add(name, parent.get_span_context(), start, end)


class _Span:
    """A traced request's span (`RequestSpan`)."""

    __slots__ = ("failed", "frontend", "span", "timestamps", "tracing")

    def __init__(
        self, span: trace.Span, tracing: OtelTracing, timestamps: Timestamps, frontend: bool
    ) -> None:
        self.span = span
        self.tracing = tracing
        self.timestamps = timestamps
        self.frontend = frontend
        self.failed = False

    def context(self, via: str) -> TraceParent:
        c = self.span.get_span_context()
        traceparent = f"00-{c.trace_id:032x}-{c.span_id:016x}-{c.trace_flags:02x}"
        return TraceParent(traceparent, c.trace_state.to_header(), via)

    def responded(self) -> None:
        now = time.monotonic_ns()
        sent = self.timestamps.sent
        if not sent:  # refused before reaching its model (no such model, a decoupled one)
            self.span.set_status(trace.StatusCode.ERROR, "not served")
        elif not self.failed:
            self.child("encode", self.tracing.wall(sent), self.tracing.wall(now))
        self.end(now)

    def child(self, name: str, start: int, end: int) -> None:
        """A finished child span, from wall-clock `start` to `end`."""
        self.tracing.child(self.span, name, start, end)

    def end(self, monotonic_ns: int) -> None:
        if self.span.is_recording():
            self.span.end(self.tracing.wall(monotonic_ns))


class _NotTraced:
    """The span of a request a frontend asked about that is not traced: the engine does not
    ask (and sample) again."""

    def context(self, via: str) -> TraceParent | None:
        return None

    def responded(self) -> None:
        """Nothing to end."""


_NOT_TRACED = _NotTraced()
