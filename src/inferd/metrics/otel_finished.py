"""Spans made once they are over, handed straight to the span processor.

The SDK's `Tracer.start_span` makes a live span (locks, bounded attributes, checks at every
call) for code that does not know when its work ends. inferd does: a request's marks are
stamped as it goes, so its span and its parts (decode, queue wait, encode, a batch's
execution) are made as the `ReadableSpan`s that the processor exports, at a fraction of the
cost. A request's span is opened (`open`: its context, sampled by the provider's sampler as the
SDK would) when it arrives; every other span is made when it ends. Nothing is made under a
context that is not sampled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace.status import Status
from opentelemetry.util.types import AttributeValue

SCOPE = InstrumentationScope("inferd")
Attributes = Mapping[str, AttributeValue]


class FinishedSpans:
    """Makes spans for `processor`, with `provider`'s resource, sampler and ids."""

    def __init__(self, provider: TracerProvider, processor: SpanProcessor) -> None:
        self._processor = processor
        self._resource = provider.resource
        self._sampler = provider.sampler
        self._ids = provider.id_generator

    def open(
        self,
        name: str,
        parent: context_api.Context | None,
        kind: trace.SpanKind,
        attributes: Attributes,
    ) -> tuple[trace.SpanContext, trace.SpanContext | None, dict[str, AttributeValue]]:
        """A new span's context under `parent` (a client's, extracted; None: a new trace),
        its parent's span context, and its attributes with the sampler's."""
        # Never the thread's current context: a request's trace is its own or its client's.
        parent = parent if parent is not None else context_api.Context()
        parent_context = trace.get_current_span(parent).get_span_context()
        if not parent_context.is_valid:
            trace_id, parent_span = self._ids.generate_trace_id(), None
        else:
            trace_id, parent_span = parent_context.trace_id, parent_context
        result = self._sampler.should_sample(parent, trace_id, name, kind, attributes)
        sampled = result.decision == Decision.RECORD_AND_SAMPLE
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT)
        context = trace.SpanContext(
            trace_id, self._ids.generate_span_id(), False, flags, result.trace_state
        )
        return context, parent_span, {**attributes, **(result.attributes or {})}

    def add(
        self,
        name: str,
        parent: trace.SpanContext,
        start: int,
        end: int,
        attributes: Attributes | None = None,
        links: Sequence[trace.Link] = (),
        events: Sequence[tuple[str, int]] = (),
    ) -> None:
        """A span under `parent` from wall-clock ns `start` to `end`; `events`: (name,
        wall-clock ns)."""
        if not parent.trace_flags.sampled:
            return
        context = trace.SpanContext(
            parent.trace_id,
            self._ids.generate_span_id(),
            False,
            parent.trace_flags,
            parent.trace_state,
        )
        self.record(name, context, parent, start, end, attributes, links, events)

    def record(
        self,
        name: str,
        context: trace.SpanContext,
        parent: trace.SpanContext | None,
        start: int,
        end: int,
        attributes: Attributes | None = None,
        links: Sequence[trace.Link] = (),
        events: Sequence[tuple[str, int]] = (),
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        status: Status | None = None,
    ) -> None:
        """The span with `context` (exported only when sampled)."""
        if not context.trace_flags.sampled:
            return
        span = ReadableSpan(
            name,
            context,
            parent,
            self._resource,
            attributes,
            [Event(event, timestamp=at) for event, at in events],
            links,
            kind,
            status=status or Status(),
            start_time=start,
            end_time=end,
            instrumentation_scope=SCOPE,
        )
        self._processor.on_end(span)
