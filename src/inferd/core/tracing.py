"""Request tracing as spans (OpenTelemetry), as the frontends and the engine see it.

The server's `RequestTracing` (made by `inferd.metrics.otel_spans` when the server traces in
`opentelemetry` mode) decides which requests are traced and makes their spans; nothing here
imports OpenTelemetry. A traced request carries its `RequestSpan` (`InferRequest.span`); one
that continues a trace carries the W3C context it continues (`InferRequest.trace_parent`): a
client's `traceparent`/`tracestate` headers, or the span of the request that made it (an
ensemble's step, a model's call to another model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from inferd.core.observer import FailureReason

if TYPE_CHECKING:
    from inferd.core.types import InferRequest, Timestamps

# The W3C Trace Context header names (HTTP headers and gRPC metadata keys alike).
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"


@dataclass(frozen=True, slots=True)
class TraceParent:
    """The W3C trace context a request continues, as its two headers spell it; `via`: how
    the request was made when another request made it (`ensemble step`, `bls`), "" for a
    client's."""

    traceparent: str
    tracestate: str = ""
    via: str = ""


def trace_parent(traceparent: str | None, tracestate: str | None) -> TraceParent | None:
    """The context a client's headers carry (None without a `traceparent`)."""
    return TraceParent(traceparent, tracestate or "") if traceparent else None


class RequestSpan(Protocol):
    def context(self, via: str) -> TraceParent | None:
        """This span as the parent of a request this request makes (`via`: how); None for a
        request the frontend asked about that is not traced."""

    def responded(self) -> None:
        """The frontend encoded the answer (or gave up): ends the span, once."""


class RequestTracing(Protocol):
    @property
    def active(self) -> bool:
        """Whether any request may be traced now (the one check on the request path)."""

    def start(self, request: InferRequest, frontend: bool) -> None:
        """Sets `request.span` when the request is traced. `frontend`: a frontend calls this
        once the request is decoded, and calls `responded` once it is answered (the span is
        then set either way, so that the request is sampled once); otherwise the span ends
        with the request's `finish`."""

    def finish(
        self, request: InferRequest, model_version: str, failure: FailureReason | None
    ) -> None:
        """A request left the engine (`timestamps.sent` is set); `failure`: why it failed,
        None when it was answered. Nothing to do for one not traced."""

    def batch_executed(
        self,
        model_name: str,
        model_version: str,
        batch_size: int,
        compute: Timestamps,
        instance: str,
        requests: Sequence[InferRequest],
    ) -> None:
        """One execution of `requests` (some may be traced) on `instance`."""
