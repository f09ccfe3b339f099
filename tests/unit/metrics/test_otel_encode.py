"""inferd's OTLP bytes carry what the SDK's encoder sends, for every kind of span inferd makes:
the same spans described once, encoded by `otel_encode` and by the SDK, decode alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.common")

from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace.status import Status

from inferd.metrics import otel_encode as wire
from inferd.metrics.otel_layout import RequestLayout

RESOURCE = {"service.name": "t", "n": 3, "on": True}
TRACE, CLIENT_TRACE = 0x0123456789ABCDEF0123456789ABCDEF, int("ab" * 16, 16)


@dataclass
class Described:
    """A span as both encoders are given it."""

    name: str
    trace_id: int
    span_id: int
    parent: int = 0
    remote_parent: bool = False
    state: str = ""
    server: bool = False
    start: int = 10
    end: int = 20
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, int]] = field(default_factory=list)
    links: list[tuple[int, int]] = field(default_factory=list)
    error: str = ""

    def inferd(self) -> bytes:
        trace_id = self.trace_id.to_bytes(16, "big")
        parent = self.parent.to_bytes(8, "big") if self.parent else None
        rest = wire.attributes(self.attributes)
        rest += b"".join(wire.event(name, at) for name, at in self.events)
        rest += b"".join(
            wire.link(t.to_bytes(16, "big"), s.to_bytes(8, "big")) for t, s in self.links
        )
        rest += wire.error(self.error) if self.error else b""
        return wire.span(
            wire.trace_head(trace_id, wire.trace_state(self.state)),
            wire.span_ids(self.span_id.to_bytes(8, "big"), parent),
            wire.name_and_kind(self.name, wire.SERVER if self.server else wire.INTERNAL),
            self.start,
            self.end,
            rest,
            wire.REMOTE if self.remote_parent else wire.LOCAL,
        )

    def sdk(self, resource: Resource) -> ReadableSpan:
        state = trace.TraceState.from_header([self.state]) if self.state else None
        sampled = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        context = trace.SpanContext(self.trace_id, self.span_id, False, sampled, state)
        parent = None
        if self.parent:
            parent = trace.SpanContext(self.trace_id, self.parent, self.remote_parent, sampled)
        links = [trace.Link(trace.SpanContext(t, s, False, sampled)) for t, s in self.links]
        return ReadableSpan(
            self.name,
            context,
            parent,
            resource,
            self.attributes,
            [Event(name, timestamp=at) for name, at in self.events],
            links,
            trace.SpanKind.SERVER if self.server else trace.SpanKind.INTERNAL,
            status=Status(trace.StatusCode.ERROR, self.error) if self.error else Status(),
            start_time=self.start,
            end_time=self.end,
            instrumentation_scope=InstrumentationScope("inferd"),
        )


SPANS = [
    # A request continuing a client's trace (with tracestate), failed.
    Described(
        "infer m",
        CLIENT_TRACE,
        7,
        parent=int("cd" * 8, 16),
        remote_parent=True,
        state="k=v,a=b",
        server=True,
        start=5,
        end=50,
        attributes={"model_name": "m", "request_id": "", "model_version": "1"},
        error="BACKEND",
    ),
    Described("decode", CLIENT_TRACE, 8, parent=7, state="k=v,a=b"),
    # A batch execution with attributes of every kind, events and links.
    Described(
        "execute m",
        TRACE,
        9,
        parent=1,
        start=30,
        end=40,
        attributes={
            "s": "x" * 300,
            "i": 8,
            "neg": -3,
            "f": 0.5,
            "b": False,
            "l": ["a", "b"],
            "kv": {"k": 1},
        },
        events=[("COMPUTE_INPUT_END", 35), ("COMPUTE_OUTPUT_START", 37)],
        links=[(TRACE, 1), (CLIENT_TRACE, 7)],
    ),
    Described("infer root", TRACE, 1, start=2**62, end=2**63 - 1),  # a root span
]


def spans_of(message: object) -> list[dict[str, object]]:
    """Each span as a dict with its resource, scope and schema, an empty status left out (the
    SDK sends one, inferd does not)."""
    spans = []
    for resource_spans in MessageToDict(message)["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                if span.get("status") == {}:
                    del span["status"]
                span["resource"] = resource_spans["resource"]
                span["schemaUrl"] = resource_spans.get("schemaUrl")
                span["scope"] = scope_spans["scope"]
                spans.append(span)
    return spans


@pytest.mark.parametrize("schema_url", ["", "https://opentelemetry.io/schemas/1.21.0"])
def test_inferd_encodes_spans_as_the_sdk_does(schema_url: str) -> None:
    resource = Resource(RESOURCE, schema_url)
    envelope = wire.Envelope(resource.attributes, resource.schema_url, "inferd")
    ours = ExportTraceServiceRequest.FromString(envelope.request(s.inferd() for s in SPANS))
    theirs = encode_spans([s.sdk(resource) for s in SPANS])
    assert len(spans_of(ours)) == len(SPANS)
    assert spans_of(ours) == spans_of(theirs)


@pytest.mark.parametrize("remote", [False, True])
@pytest.mark.parametrize("request_id", ["", "7", "é-" + "x" * 40])
def test_a_request_laid_out_is_the_spans_the_sdk_sends(remote: bool, request_id: str) -> None:
    """A request's four spans packed by its `RequestLayout`: the same bytes as made span by
    span, and what the SDK sends."""
    parent = int("cd" * 8, 16) if remote else 0
    attributes = {"model_name": "m", "request_id": request_id, "model_version": "2"}
    own, times = 7, {"start": 100, "end": 900}
    described = [
        Described("infer m", CLIENT_TRACE, own, parent, remote, server=True,
                  attributes=attributes, **times),
        Described("decode", CLIENT_TRACE, 8, own, start=100, end=200),
        Described("queue", CLIENT_TRACE, 9, own, start=300, end=400),
        Described("encode", CLIENT_TRACE, 10, own, start=800, end=900),
    ]  # fmt: skip
    key = wire.attribute_key
    id_size = len(request_id.encode())
    layout = RequestLayout(
        wire.name_and_kind("infer m", wire.SERVER),
        wire.string_attribute(key("model_name"), "m"),
        key("request_id"),
        id_size,
        wire.string_attribute(key("model_version"), "2"),
        remote,
    )
    ids = [(i).to_bytes(8, "big") for i in (own, parent, 8, 9, 10)]
    laid_out = layout.spans(
        (CLIENT_TRACE.to_bytes(16, "big"), *ids, request_id.encode(), 100, 900, 200, 300, 400, 800)
    )
    assert laid_out == b"".join(s.inferd() for s in described)
    resource = Resource(RESOURCE)
    envelope = wire.Envelope(resource.attributes, "", "inferd")
    ours = ExportTraceServiceRequest.FromString(envelope.request([laid_out]))
    assert spans_of(ours) == spans_of(encode_spans([s.sdk(resource) for s in described]))


def test_an_event_pair_is_its_two_events() -> None:
    pair = wire.EventPair("COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START")
    times = (35, 2**63 + 5)
    expected = wire.event("COMPUTE_INPUT_END", times[0]) + wire.event(
        "COMPUTE_OUTPUT_START", times[1]
    )
    assert pair.encode(*times) == expected
