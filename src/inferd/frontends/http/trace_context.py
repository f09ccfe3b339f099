"""The W3C trace context a client's HTTP headers carry (`traceparent`, `tracestate`), for the
routes that continue a client's trace when the server traces requests as spans."""

from __future__ import annotations

from collections.abc import Iterable

from inferd.core.tracing import TraceParent, trace_parent


def client_trace(headers: Iterable[tuple[bytes, bytes]]) -> TraceParent | None:
    """The context of the headers (None without a `traceparent`)."""
    parent = state = None
    for name, value in headers:
        if name == b"traceparent":
            parent = value.decode("latin-1")
        elif name == b"tracestate":
            state = value.decode("latin-1")
    return trace_parent(parent, state)
