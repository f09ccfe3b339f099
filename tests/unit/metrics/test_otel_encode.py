"""inferd's OTLP encoding carries what the SDK's does, for every kind of span inferd makes."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.common")

from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace.propagation.tracecontext import (
    TraceContextTextMapPropagator,
)
from opentelemetry.trace.status import Status

from inferd.metrics.otel_encode import encode
from inferd.metrics.otel_finished import FinishedSpans


def made_spans() -> list[ReadableSpan]:
    """A request continuing a client's trace (with tracestate), failed; a decode under it; a
    batch execution with attributes of every kind, events and links; a root span made by the
    SDK's tracer."""
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider = TracerProvider(resource=Resource({"service.name": "t", "n": 3}))
    provider.add_span_processor(processor)
    carrier = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01", "tracestate": "k=v"}
    client = TraceContextTextMapPropagator().extract(carrier)
    finished = FinishedSpans(provider, processor)
    kind = trace.SpanKind.SERVER
    context, parent, attributes = finished.open("infer m", client, kind, {"model_name": "m"})
    finished.add("decode", context, 10, 20)
    batch = {"s": "x", "i": 8, "f": 0.5, "b": True, "l": ["a", "b"]}
    links = [trace.Link(context), trace.Link(context)]
    finished.add("execute m", context, 30, 40, batch, links, [("E", 35)])
    status = Status(trace.StatusCode.ERROR, "BACKEND")
    finished.record("infer m", context, parent, 5, 50, attributes, kind=kind, status=status)
    provider.get_tracer("inferd").start_span("root").end()
    return list(exporter.get_finished_spans())


def spans_of(message: object) -> list[dict[str, object]]:
    """Each span as a dict, an empty status left out (the SDK sends one, inferd does not)."""
    spans = []
    for resource_spans in MessageToDict(message)["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                if span.get("status") == {}:
                    del span["status"]
                spans.append({**span, "resource": resource_spans["resource"]})
    return spans


def test_inferd_encodes_spans_as_the_sdk_does() -> None:
    spans = made_spans()
    assert len(spans) == 4
    assert spans_of(encode(spans)) == spans_of(encode_spans(spans))
