"""Spans whose start and end are known when they are made (a request's decode, queue wait and
encode; a batch's execution), handed straight to the span processor.

The SDK's `Tracer.start_span` samples, checks and times each span as it goes; a span already
over, under a parent that is sampled, needs none of that, and costs a fraction when made as
the `ReadableSpan` that the processor exports. A span under a parent that is not sampled is
not made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util.types import AttributeValue

SCOPE = InstrumentationScope("inferd")


class FinishedSpans:
    """Makes finished spans for `processor`, with the provider's `resource`."""

    def __init__(self, processor: SpanProcessor, resource: Resource) -> None:
        self._processor = processor
        self._resource = resource
        self._ids = RandomIdGenerator()

    def add(
        self,
        name: str,
        parent: trace.SpanContext,
        start: int,
        end: int,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[trace.Link] = (),
        events: Sequence[tuple[str, int]] = (),
    ) -> None:
        """A span under `parent` from wall-clock ns `start` to `end` (none when `parent` is
        not sampled); `events`: (name, wall-clock ns)."""
        if not parent.trace_flags.sampled:
            return
        context = trace.SpanContext(
            parent.trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
        span = ReadableSpan(
            name,
            context,
            parent,
            self._resource,
            attributes,
            [Event(event, timestamp=at) for event, at in events],
            links,
            start_time=start,
            end_time=end,
            instrumentation_scope=SCOPE,
        )
        self._processor.on_end(span)
