"""OTLP exporters whose encoding costs a fraction of the SDK's.

The SDK's OTLP encoder builds each span as a message of its own and copies it into its batch,
and hashes the resource (as JSON) once per span: on a server tracing every request that was
most of tracing's CPU. Here each span is added in place to its batch's message. The transport,
retries and `OTEL_EXPORTER_OTLP_*` settings stay the SDK exporters'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext

# Span.flags: the parent's remoteness is known, and whether it is remote.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200


def encode(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The OTLP request carrying `spans`, grouped by resource and instrumentation scope."""
    request = ExportTraceServiceRequest()
    groups: dict[tuple[int, str, str], Any] = {}
    for span in spans:
        scope = span.instrumentation_scope
        name, version = (scope.name, scope.version or "") if scope else ("", "")
        key = (id(span.resource), name, version)
        group = groups.get(key)
        if group is None:
            resource_spans = request.resource_spans.add(schema_url=span.resource.schema_url)
            _attributes(resource_spans.resource.attributes, span.resource.attributes)
            group = resource_spans.scope_spans.add()
            group.scope.name, group.scope.version = name, version
            groups[key] = group
        _span(group.spans.add(), span)
    return request


def _span(message: Any, span: ReadableSpan) -> None:
    context = span.context
    parent = span.parent
    assert context is not None
    message.trace_id = _trace_id(context)
    message.span_id = context.span_id.to_bytes(8, "big")
    message.name = span.name
    message.kind = span.kind.value + 1  # the SDK counts from INTERNAL, OTLP from UNSPECIFIED
    message.start_time_unix_nano = span.start_time or 0
    message.end_time_unix_nano = span.end_time or 0
    message.flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent and parent.is_remote else 0)
    if context.trace_state:
        message.trace_state = context.trace_state.to_header()
    if parent is not None:
        message.parent_span_id = parent.span_id.to_bytes(8, "big")
    if span.attributes:
        _attributes(message.attributes, span.attributes)
    for event in span.events:
        added = message.events.add(name=event.name, time_unix_nano=event.timestamp)
        if event.attributes:
            _attributes(added.attributes, event.attributes)
    for link in span.links:
        link_context = link.context
        message.links.add(
            trace_id=_trace_id(link_context),
            span_id=link_context.span_id.to_bytes(8, "big"),
            flags=_HAS_IS_REMOTE | (_IS_REMOTE if link_context.is_remote else 0),
        )
    status = span.status
    if status.status_code.value:
        message.status.code = status.status_code.value
        message.status.message = status.description or ""


def _trace_id(context: SpanContext) -> bytes:
    return context.trace_id.to_bytes(16, "big")


def _attributes(target: Any, attributes: Mapping[str, Any] | None) -> None:
    for key, value in (attributes or {}).items():
        _value(target.add(key=key).value, value)


def _value(target: Any, value: Any) -> None:
    # bool first: it is an int too.
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, Sequence):
        values = target.array_value.values
        for item in value:
            _value(values.add(), item)
    else:
        target.string_value = str(value)


class LeanGrpcExporter(GrpcSpanExporter):
    """The SDK's OTLP/gRPC exporter with this module's encoding."""

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return encode(data)


class LeanHttpExporter(HttpSpanExporter):
    """The SDK's OTLP/HTTP exporter with this module's encoding (its own where the SDK's
    transport is not where this SDK version keeps it)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client = getattr(self, "_client", None)
        if self._shutdown or client is None:
            return super().export(spans)
        answer = client.export(encode(spans).SerializePartialToString())
        return SpanExportResult.SUCCESS if answer.success else SpanExportResult.FAILURE
