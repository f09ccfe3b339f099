"""OpenTelemetry spans of requests: the server's `RequestTracing` in `opentelemetry` mode.

A traced request is one span from its arrival to its answer (named `infer <model>`; an
ensemble's step `ensemble step <model>`, a model's call `bls <model>`), with child spans for
what the frontend decoded (`decode`), the wait in its model's queue (`queue`) and the encoding
of its answer (`encode`). Each execution of a batch holding traced requests is one span
(`execute <model>`, with the batch size and instance as attributes) under its first traced
request's span and linked to every traced request's span. Which requests are traced is the
trace settings' call (`TritonTracer.sample`): the rate, count and level of the model's scope;
whether a traced request's span is sampled is the OpenTelemetry sampler's (`otel_context.py`).

On the request path a traced request costs a plain record and its ids (`otel_records.py`);
its spans are made and encoded on the export thread (`otel_export.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from inferd.core.observer import FailureReason
from inferd.core.tracing import TraceParent
from inferd.core.types import InferRequest, Timestamps
from inferd.metrics.otel_context import Sampling, parent_of
from inferd.metrics.otel_records import ExecutionRecord, Put, RequestRecord

if TYPE_CHECKING:
    from inferd.metrics.triton_trace import TritonTracer


class OtelTracing:
    """Spans of the requests the trace settings (`sampler`) pick, sampled by `sampling`, with
    ids from `trace_id` and `span_id`, queued with `put`."""

    def __init__(
        self,
        put: Put,
        sampler: TritonTracer,
        sampling: Sampling,
        trace_id: Callable[[], int],
        span_id: Callable[[], int],
    ) -> None:
        self._put = put
        self._sampler = sampler
        self._sampling = sampling
        self._trace_id = trace_id
        self._span_id = span_id

    @property
    def active(self) -> bool:
        return self._sampler.spans_active

    def start(self, request: InferRequest, frontend: bool) -> None:
        context = request.trace_parent
        model = request.model_name
        if not self._sampler.sample(model, context is not None):
            if frontend:
                request.span = _NOT_TRACED
            return
        parent = None if context is None else parent_of(context)
        name = f"{context.via if context and context.via else 'infer'} {model}"
        trace_id = self._trace_id() if parent is None else parent.trace_id
        sampled, state, extra = self._sampling.decide(
            parent, trace_id, name, frontend, model, request.id
        )
        ids = (trace_id, self._span_id(), 0 if parent is None else parent.span_id)
        request.span = RequestRecord(
            self._put,
            name,
            model,
            request.id,
            request.timestamps,
            frontend,
            ids,
            sampled,
            state,
            extra,
        )

    def finish(
        self, request: InferRequest, model_version: str, failure: FailureReason | None
    ) -> None:
        record = request.span
        if not isinstance(record, RequestRecord):
            return
        record.model_version = model_version
        if failure is not None:
            record.error = failure.value
        if not record.frontend:
            record.end(request.timestamps.sent)

    def batch_executed(
        self,
        model_name: str,
        model_version: str,
        batch_size: int,
        compute: Timestamps,
        instance: str,
        requests: Sequence[InferRequest],
    ) -> None:
        traced = [r.span for r in requests if isinstance(r.span, RequestRecord) and r.span.sampled]
        if traced:
            execution = ExecutionRecord(
                model_name, model_version, batch_size, compute, instance, traced
            )
            self._put(execution)


class _NotTraced:
    """The span of a request a frontend asked about that is not traced: the engine does not
    ask (and sample) again."""

    def context(self, via: str) -> TraceParent | None:
        return None

    def responded(self) -> None:
        """Nothing to end."""


_NOT_TRACED = _NotTraced()
