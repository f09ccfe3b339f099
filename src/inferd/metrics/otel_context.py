"""A traced request's place in its trace: the W3C context it continues, read as the SDK's
propagator reads it, and whether its span is sampled, as the SDK's sampler decides.

The default sampler (`parentbased_always_on`: a new trace is sampled, a continued one as its
parent says) is decided here without the SDK; any other `OTEL_TRACES_SAMPLER` is asked, with
the context the SDK would give it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from inferd.core.tracing import TraceParent

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.sampling import Sampler

# As the SDK's `TraceContextTextMapPropagator` reads them.
_TRACEPARENT = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)
_MAXIMUM_LENGTH = 512  # of either header
_SAMPLED = 0x01


@dataclass(frozen=True, slots=True)
class Parent:
    """The span a request's span continues (from another process: remote)."""

    trace_id: int
    span_id: int
    flags: int
    state: str  # the tracestate header, as the SDK writes it back


def parent_of(context: TraceParent) -> Parent | None:
    """The span `context` names; None when its `traceparent` is not a valid one."""
    header = context.traceparent
    if len(header) > _MAXIMUM_LENGTH:
        return None
    match = _TRACEPARENT.match(header)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or not int(trace_id, 16):
        return None
    if not int(span_id, 16):
        return None
    state = context.tracestate
    if state and len(state) <= _MAXIMUM_LENGTH:
        from opentelemetry.trace import TraceState

        state = TraceState.from_header([state]).to_header()
    else:
        state = ""
    return Parent(int(trace_id, 16), int(span_id, 16), int(flags, 16), state)


def traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


# Whether a span is sampled, its tracestate header, and attributes the sampler adds.
Decision = tuple[bool, str, Mapping[str, Any] | None]


class Sampling(Protocol):
    def decide(
        self, parent: Parent | None, trace_id: int, name: str, server: bool, model: str, id: str
    ) -> Decision:
        """The decision for a new span `name` in `trace_id` (under `parent`; `server`: its
        kind), for a request of `model` with `id`."""


class ParentBased:
    """The SDK's default sampler: a new trace is sampled, a continued one as its parent."""

    def decide(
        self, parent: Parent | None, trace_id: int, name: str, server: bool, model: str, id: str
    ) -> Decision:
        if parent is None:
            return True, "", None
        return bool(parent.flags & _SAMPLED), parent.state, None


class SdkSampling:
    """Another `OTEL_TRACES_SAMPLER`, asked as the SDK's tracer asks it."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler

    def decide(
        self, parent: Parent | None, trace_id: int, name: str, server: bool, model: str, id: str
    ) -> Decision:
        from opentelemetry import trace
        from opentelemetry.context import Context
        from opentelemetry.sdk.trace.sampling import Decision as Sampled

        context = Context()
        if parent is not None:
            states = trace.TraceState.from_header([parent.state]) if parent.state else None
            span = trace.SpanContext(
                parent.trace_id, parent.span_id, True, trace.TraceFlags(parent.flags), states
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(span), context)
        kind = trace.SpanKind.SERVER if server else trace.SpanKind.INTERNAL
        attributes = {"model_name": model, "request_id": id}
        result = self._sampler.should_sample(context, trace_id, name, kind, attributes)
        given = result.trace_state
        sampled = result.decision == Sampled.RECORD_AND_SAMPLE
        return sampled, given.to_header() if given else "", dict(result.attributes or {}) or None
