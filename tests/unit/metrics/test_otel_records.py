"""The spans a traced request's records become: the calls the frontend and the engine make,
queued as records, exported in batches and decoded from the OTLP bytes."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from inferd.core.observer import FailureReason
from inferd.core.tracing import TraceParent
from inferd.core.types import InferRequest, Timestamps
from inferd.metrics.otel_context import ParentBased, Sampling, SdkSampling
from inferd.metrics.otel_encode import Envelope
from inferd.metrics.otel_export import SpanExport, http_sender
from inferd.metrics.otel_records import Encoding
from inferd.metrics.otel_spans import OtelTracing
from inferd.metrics.triton_trace import TritonTracer

CLIENT_TRACE, CLIENT_SPAN = "ab" * 16, "cd" * 8
SPANS = {"trace_level": ["TIMESTAMPS"], "trace_rate": ["1"], "trace_mode": ["opentelemetry"]}


class Sent:
    """A sender keeping each request's spans."""

    def __init__(self) -> None:
        self.requests: list[list[Any]] = []

    def send(self, payload: bytes, spans: int) -> None:
        message = ExportTraceServiceRequest.FromString(payload)
        [resource_spans] = message.resource_spans
        [scope_spans] = resource_spans.scope_spans
        assert len(scope_spans.spans) == spans
        self.requests.append(list(scope_spans.spans))

    def shutdown(self) -> None:
        """Nothing to close."""

    def spans(self) -> dict[str, Any]:
        return {s.name: s for request in self.requests for s in request}


def tracing(
    sent: Sent, sampling: Sampling | None = None, batch: int = 512, queue: int = 2048
) -> tuple[OtelTracing, SpanExport]:
    ids = itertools.count(1)
    encoding = Encoding(lambda: next(ids))
    export = SpanExport(
        sent, Envelope({"service.name": "t"}, "", "inferd"), encoding, queue, 60_000, batch
    )
    tracer = TritonTracer(SPANS, opentelemetry=True)
    traces = itertools.count(0x1000)
    spans = OtelTracing(
        export.put, tracer, sampling or ParentBased(), lambda: next(traces), lambda: next(ids)
    )
    return spans, export


def request(model: str, context: TraceParent | None = None, id: str = "r") -> InferRequest:
    traced = InferRequest(model_name=model, inputs={}, id=id, trace_parent=context)
    traced.timestamps = Timestamps(received=1_000, queued=2_000)
    return traced


def serve(
    spans: OtelTracing, requests: list[InferRequest], failure: FailureReason | None = None
) -> None:
    """What the frontend and the engine call for `requests` served in one batch."""
    for r in requests:
        spans.start(r, frontend=True)
    compute = Timestamps(0, 0, 3_000, 4_000, 5_000, 6_000)
    spans.batch_executed("m", "1", len(requests), compute, "m_0", requests)
    for r in requests:
        r.timestamps.copy_compute(compute)
        r.timestamps.sent = 7_000
        spans.finish(r, "1", failure)
        assert r.span is not None
        r.span.responded()


def attributes(span: Any) -> dict[str, Any]:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


def test_a_request_continuing_a_client_trace_and_its_batch() -> None:
    sent = Sent()
    spans, export = tracing(sent)
    client = TraceParent(f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", "k=v")
    mine, other = request("m", client, "a"), request("m", None, "b")
    serve(spans, [mine, other])
    export.shutdown()
    [batch] = sent.requests
    assert len(batch) == 1 + 2 * 4  # the execution; per request: itself, decode, queue, encode
    roots = [s for s in batch if s.name == "infer m"]
    root = next(s for s in roots if s.trace_id.hex() == CLIENT_TRACE)
    assert (root.parent_span_id.hex(), root.trace_state, root.kind) == (CLIENT_SPAN, "k=v", 2)
    assert root.flags == 0x300  # its parent is remote
    assert attributes(root) == {"model_name": "m", "request_id": "a", "model_version": "1"}
    children = {s.name: s for s in batch if s.parent_span_id == root.span_id}
    assert set(children) <= {"decode", "queue", "encode", "execute m"}
    assert {"decode", "queue", "encode"} <= set(children)
    wall = root.start_time_unix_nano - 1_000
    queue, encode = children["queue"], children["encode"]
    assert (queue.start_time_unix_nano - wall, queue.end_time_unix_nano - wall) == (2_000, 3_000)
    assert encode.start_time_unix_nano - wall == 7_000
    assert encode.end_time_unix_nano == root.end_time_unix_nano
    assert all(c.flags == 0x100 and c.trace_id == root.trace_id for c in children.values())
    [execution] = [s for s in batch if s.name == "execute m"]
    assert execution.parent_span_id in {r.span_id for r in roots}
    assert sorted(link.span_id for link in execution.links) == sorted(r.span_id for r in roots)
    assert [e.name for e in execution.events] == ["COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START"]
    assert attributes(execution) == {
        "model_name": "m", "model_version": "1", "batch_size": 2, "instance": "m_0"
    }  # fmt: skip
    [new_root] = [r for r in roots if r is not root]
    assert new_root.parent_span_id == b"" and new_root.flags == 0x100
    assert len({s.span_id for s in batch}) == len(batch)


def test_a_failed_request_is_an_error_without_encode() -> None:
    sent = Sent()
    spans, export = tracing(sent)
    serve(spans, [request("m")], FailureReason.BACKEND)
    export.shutdown()
    root = sent.spans()["infer m"]
    assert (root.status.code, root.status.message) == (2, "BACKEND")
    assert "encode" not in sent.spans()


def test_a_step_continues_its_request_and_an_unsampled_client_stays_unsampled() -> None:
    sent = Sent()
    spans, export = tracing(sent)
    outer = request("ensemble")
    spans.start(outer, frontend=True)
    assert outer.span is not None
    step = request("m", outer.span.context("ensemble step"))
    spans.start(step, frontend=False)
    step.timestamps.sent = 9_000
    spans.finish(step, "1", None)
    unsampled = request("m", TraceParent(f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"))
    spans.start(unsampled, frontend=True)
    assert unsampled.span is not None
    below = unsampled.span.context("bls")
    assert below is not None and below.traceparent.startswith(f"00-{CLIENT_TRACE}-")
    assert below.traceparent.endswith("-00")  # what it starts is not sampled either
    unsampled.span.responded()
    export.shutdown()
    names = [s.name for r in sent.requests for s in r]
    assert names == ["ensemble step m", "queue"]  # the ensemble's request is still running
    root = sent.spans()["ensemble step m"]
    assert (root.kind, root.flags) == (1, 0x300)
    assert root.parent_span_id.hex() == outer.span.context("x").traceparent[36:52]


@pytest.mark.parametrize(
    "traceparent",
    [f"01-{CLIENT_TRACE}-{CLIENT_SPAN}-01-later", f"ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
     f"00-{'0' * 32}-{CLIENT_SPAN}-01", f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-more", "junk"],
)  # fmt: skip
def test_a_traceparent_is_read_as_the_sdk_reads_it(traceparent: str) -> None:
    sent = Sent()
    spans, export = tracing(sent)
    serve(spans, [request("m", TraceParent(traceparent))])
    export.shutdown()
    root = sent.spans()["infer m"]
    if traceparent.startswith("01-"):  # a later version may add fields
        assert root.parent_span_id.hex() == CLIENT_SPAN
    else:  # invalid: a trace of its own
        assert root.parent_span_id == b"" and root.trace_id.hex() != CLIENT_TRACE


def test_another_sampler_is_asked() -> None:
    sent = Sent()
    spans, export = tracing(sent, SdkSampling(ALWAYS_OFF))
    serve(spans, [request("m")])
    export.shutdown()
    assert sent.requests == []


def test_batches_hold_at_most_the_batch_size() -> None:
    sent = Sent()
    spans, export = tracing(sent, batch=3)
    serve(spans, [request("m", id=str(i)) for i in range(4)])
    export.shutdown()
    assert all(len(r) <= 3 for r in sent.requests)
    assert sum(len(r) for r in sent.requests) == 1 + 4 * 4


def test_a_full_queue_drops_what_does_not_fit() -> None:
    sent = Sent()
    spans, export = tracing(sent, batch=8, queue=8)
    serve(spans, [request("m", id=str(i)) for i in range(4)])
    export.shutdown()
    # The execution and the first request's four spans fit; the others' would not.
    assert [s.name for r in sent.requests for s in r] == [
        "execute m", "infer m", "decode", "queue", "encode"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("url", "proxy", "transport"),
    [
        ("http://127.0.0.1:4318/v1/traces", "", "PlainTransport"),
        ("http://collector:4318/v1/traces", "http://proxy:3128", "RequestsHTTPTransport"),
        ("https://collector:4318/v1/traces", "", "RequestsHTTPTransport"),
    ],
)
def test_plain_http_without_a_proxy_goes_over_one_kept_connection(
    monkeypatch: pytest.MonkeyPatch, url: str, proxy: str, transport: str
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    if proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
    sender = http_sender(url)
    try:
        assert type(sender._client._transport).__name__ == transport  # type: ignore[attr-defined]
    finally:
        sender.shutdown()
