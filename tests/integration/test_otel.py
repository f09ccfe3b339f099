"""OpenTelemetry spans of the real server, exported over OTLP to receivers the tests start:
their parentage across an ensemble and a batch (whose execution links to each request's span),
W3C `traceparent` continuation over HTTP and gRPC, and the trace settings (rate 0, level OFF)
changed at run time through tritonclient."""

from __future__ import annotations

import concurrent.futures
import json
import queue
import secrets
import shutil
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.conftest import generate_models
from tests.integration.http_helpers import request
from tests.integration.model_files import write
from tests.integration.otlp_receivers import Received, Span, grpc_receiver, http_receiver
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually
from tests.integration.test_python_bls import EXAMPLES, FORWARD, _config

pytest.importorskip("opentelemetry.sdk")

# Four requests arriving together make one batch: the batcher waits (up to a minute) for them.
BATCHED_CONFIG = """name: "batched"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 60000000 }
"""
BATCH = 4
WIDTH_4 = """
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
"""
PIPELINE_STEPS = {"pre", "mlp_a", "mlp_b", "post"}
# The request, its decode and encode; per step: the step, its queue wait, its execution.
PIPELINE_SPANS = 3 + 3 * len(PIPELINE_STEPS)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("otel")
    generate_models.write_onnx_pipeline(repository)
    generate_models.affine_model(repository / "batched" / "1" / "model.onnx", 2.0, 1.0, 4)
    (repository / "batched" / "config.pbtxt").write_text(BATCHED_CONFIG)
    # A Python model calling `pre` (BLS) for each request.
    for name, isolation in (("to_pre", "none"), ("to_pre_isolated", "process")):
        write(repository, name, FORWARD, _config(name, WIDTH_4, isolation, target="pre"))
    shutil.copytree(EXAMPLES / "repeat", repository / "repeat")  # decoupled
    shutil.copytree(EXAMPLES / "tiny_embed", repository / "tiny_embed")  # on /v1/embeddings
    return repository


def trace_flags(*extra: str) -> list[str]:
    flags = ["mode=opentelemetry", "level=TIMESTAMPS", "rate=1", *extra]
    # Spans leave the server every 50 ms rather than every 5 s.
    flags.append("opentelemetry,bsp_schedule_delay=50")
    return [arg for flag in flags for arg in ("--trace-config", flag)]


@pytest.fixture(scope="module")
def http_exported(repository: Path) -> Iterator[tuple[RunningServer, Received]]:
    """A server exporting over OTLP/HTTP, configured by `--trace-config` as in Triton."""
    with http_receiver() as (address, received):
        url = f"opentelemetry,url={address}/v1/traces"
        resource = "opentelemetry,resource=deployment.environment=test"
        with running_server(repository, *trace_flags(url, resource)) as server:
            yield server, received


@pytest.fixture(scope="module")
def grpc_exported(repository: Path) -> Iterator[tuple[RunningServer, Received]]:
    """A server exporting over OTLP/gRPC, configured by the standard OTEL_* variables."""
    with grpc_receiver() as (address, received):
        env = {
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://{address}",
            "OTEL_SERVICE_NAME": "inferd-under-test",
        }
        with running_server(repository, *trace_flags(), env=env) as server:
            yield server, received


def client_context() -> tuple[str, str, dict[str, str]]:
    """A client's trace id and span id, and the headers that carry them."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, {"traceparent": f"00-{trace_id}-{span_id}-01", "tracestate": "k=v"}


def infer(
    server: RunningServer, protocol: str, model: str, headers: dict[str, str] | None = None
) -> None:
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    with closing(module.InferenceServerClient(url)) as client:
        name = "IN" if model == "onnx_pipeline" else "INPUT0"
        tensor = module.InferInput(name, [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
        client.infer(model, [tensor], headers=headers)


def trace_of(received: Received, trace_id: str, count: int) -> list[Span]:
    """The `count` spans of one trace, once all arrived."""
    eventually(lambda: len([s for s in received.snapshot() if s.trace_id == trace_id]) >= count)
    return [s for s in received.snapshot() if s.trace_id == trace_id]


def children(spans: list[Span], parent: Span) -> dict[str, Span]:
    return {s.name: s for s in spans if s.parent_id == parent.span_id}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_client_trace_continues_through_an_ensemble(
    http_exported: tuple[RunningServer, Received], protocol: str
) -> None:
    server, received = http_exported
    trace_id, client_span, headers = client_context()
    infer(server, protocol, "onnx_pipeline", headers)
    spans = trace_of(received, trace_id, PIPELINE_SPANS)
    [root] = [s for s in spans if s.name == "infer onnx_pipeline"]
    assert root.parent_id == client_span
    assert root.attributes["model_name"] == "onnx_pipeline"
    assert root.attributes["model_version"] == "1"
    assert root.resource["deployment.environment"] == "test"
    assert root.resource["service.name"] == "inferd"
    below = children(spans, root)
    assert set(below) == {"decode", "encode"} | {f"ensemble step {m}" for m in PIPELINE_STEPS}
    for model in PIPELINE_STEPS:
        step = below[f"ensemble step {model}"]
        assert step.attributes["model_name"] == model
        execution = children(spans, step)[f"execute {model}"]
        assert set(children(spans, step)) == {"queue", f"execute {model}"}
        assert execution.links == [(trace_id, step.span_id)]
        assert execution.attributes["batch_size"] == 1
        assert execution.attributes["instance"].startswith(model)
        assert execution.events == ["COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START"]
    assert not any(s.error for s in spans)


@pytest.mark.parametrize("model", ["to_pre", "to_pre_isolated"])
def test_a_model_call_is_a_span_under_the_calling_request(
    http_exported: tuple[RunningServer, Received], model: str
) -> None:
    server, received = http_exported
    trace_id, client_span, headers = client_context()
    infer(server, "grpc", model, headers)
    # The request (decode, queue, its execution, encode); the call (queue, its execution).
    spans = trace_of(received, trace_id, 5 + 3)
    [root] = [s for s in spans if s.name == f"infer {model}"]
    assert root.parent_id == client_span
    below = children(spans, root)
    assert set(below) == {"decode", "queue", f"execute {model}", "bls pre", "encode"}
    assert set(children(spans, below["bls pre"])) == {"queue", "execute pre"}


def test_a_batch_links_to_each_request_it_served(
    http_exported: tuple[RunningServer, Received],
) -> None:
    server, received = http_exported
    contexts = [client_context() for _ in range(BATCH)]
    with concurrent.futures.ThreadPoolExecutor(BATCH) as pool:
        calls = [pool.submit(infer, server, "http", "batched", h) for _, _, h in contexts]
        for call in calls:
            call.result()
    # Per request: the request, decode, queue, encode; and the one execution, in one trace.
    traces = {t for t, _, _ in contexts}
    eventually(lambda: len([s for s in received.snapshot() if s.trace_id in traces]) >= 4 * 4 + 1)
    requests = [trace_of(received, t, 4) for t, _, _ in contexts]
    roots = [next(s for s in spans if s.name == "infer batched") for spans in requests]
    executions = [s for spans in requests for s in spans if s.name == "execute batched"]
    # One execution served the four: it sits under one request's span and links to each.
    [execution] = executions
    assert execution.attributes["batch_size"] == BATCH
    assert sorted(execution.links) == sorted((r.trace_id, r.span_id) for r in roots)
    assert execution.parent_id in {r.span_id for r in roots}
    for root, (_, client_span, _) in zip(roots, contexts, strict=True):
        assert root.parent_id == client_span
        assert set(children(received.snapshot(), root)) >= {"decode", "queue", "encode"}


def test_spans_go_over_grpc_as_the_otel_variables_say(
    grpc_exported: tuple[RunningServer, Received],
) -> None:
    server, received = grpc_exported
    trace_id, client_span, headers = client_context()
    infer(server, "grpc", "pre", headers)
    infer(server, "http", "pre", headers)
    spans = trace_of(received, trace_id, 2 * 4)
    roots = [s for s in spans if s.name == "infer pre"]
    assert len(roots) == 2
    assert {r.parent_id for r in roots} == {client_span}
    assert roots[0].resource["service.name"] == "inferd-under-test"


def update(server: RunningServer, settings: dict[str, Any]) -> None:
    with closing(httpclient.InferenceServerClient(server.http_url)) as client:
        client.update_trace_settings(settings=settings)


def new_roots(received: Received, before: int) -> list[Span]:
    return [s for s in received.snapshot()[before:] if s.name.startswith("infer ")]


def test_trace_settings_changed_at_run_time_decide_what_is_traced(
    http_exported: tuple[RunningServer, Received],
) -> None:
    server, received = http_exported
    try:
        # Rate 0: only requests that carry a client's trace context are traced.
        update(server, {"trace_rate": "0"})
        before = len(received.snapshot())
        infer(server, "http", "onnx_pipeline")
        marker, _, headers = client_context()
        infer(server, "http", "onnx_pipeline", headers)
        trace_of(received, marker, PIPELINE_SPANS)  # all of it: the next step counts anew
        # Spans leave in the order they end: the untraced request's would have come first.
        assert {s.trace_id for s in received.snapshot()[before:]} == {marker}
        # Level OFF: nothing is traced, a client's context or not.
        update(server, {"trace_level": ["OFF"]})
        before = len(received.snapshot())
        infer(server, "http", "onnx_pipeline", headers)
        update(server, {"trace_level": ["TIMESTAMPS"], "trace_rate": "1"})
        infer(server, "grpc", "onnx_pipeline")  # traced again, in a trace of its own
        eventually(lambda: len(new_roots(received, before)) > 0)
        [root] = new_roots(received, before)
        assert root.trace_id != marker
        assert root.parent_id == ""
        assert {s.trace_id for s in received.snapshot()[before:]} == {root.trace_id}
    finally:
        update(server, {"trace_level": None, "trace_rate": None})


def test_a_failed_request_has_an_error_span(http_exported: tuple[RunningServer, Received]) -> None:
    server, received = http_exported
    trace_id, _, headers = client_context()
    with closing(httpclient.InferenceServerClient(server.http_url)) as client:
        tensor = httpclient.InferInput("IN", [1, 3], "FP32")  # the ensemble takes 4 wide
        tensor.set_data_from_numpy(np.ones((1, 3), np.float32))
        with pytest.raises(Exception, match="shape"):
            client.infer("onnx_pipeline", [tensor], headers=headers)
    [root] = [s for s in trace_of(received, trace_id, 2) if s.name == "infer onnx_pipeline"]
    assert root.error
    assert "encode" not in children(received.snapshot(), root)


def test_a_request_for_no_such_model_has_an_error_span(
    http_exported: tuple[RunningServer, Received],
) -> None:
    server, received = http_exported
    trace_id, client_span, headers = client_context()
    with pytest.raises(Exception, match=r"unknown model|not found"):
        infer(server, "grpc", "no_such_model", headers)
    [root] = [s for s in trace_of(received, trace_id, 2) if s.name != "decode"]
    assert (root.name, root.parent_id, root.error) == ("infer no_such_model", client_span, True)


def test_the_generate_endpoint_continues_a_client_trace(
    http_exported: tuple[RunningServer, Received],
) -> None:
    server, received = http_exported
    trace_id, client_span, headers = client_context()
    body = json.dumps({"INPUT0": [1.0, 2.0, 3.0, 4.0]})
    status, _, answer = request(server.http_port, "POST", "/v2/models/pre/generate", body, headers)
    assert status == 200, answer
    spans = trace_of(received, trace_id, 3)  # the request, its queue wait, its execution
    [root] = [s for s in spans if s.name == "infer pre"]
    assert root.parent_id == client_span
    assert set(children(spans, root)) == {"queue", "execute pre"}


def test_a_rate_traces_one_request_in_n(http_exported: tuple[RunningServer, Received]) -> None:
    server, received = http_exported
    try:
        update(server, {"trace_rate": "2"})
        before = len(received.snapshot())
        for protocol in ("http", "grpc", "http", "grpc"):
            infer(server, protocol, "pre")
        marker, _, headers = client_context()
        infer(server, "http", "pre", headers)
        trace_of(received, marker, 5)
        roots = [s for s in new_roots(received, before) if s.trace_id != marker]
        assert len(roots) == 2
        # Each sampled where it arrived: with its decode and encode.
        for root in roots:
            below = {"decode", "queue", "execute pre", "encode"}
            assert set(children(received.snapshot(), root)) == below
    finally:
        update(server, {"trace_rate": None})


def test_a_grpc_stream_continues_the_trace_of_its_call(
    http_exported: tuple[RunningServer, Received],
) -> None:
    server, received = http_exported
    trace_id, client_span, headers = client_context()
    answers: queue.SimpleQueue[Any] = queue.SimpleQueue()
    with closing(grpcclient.InferenceServerClient(server.grpc_url)) as client:
        client.start_stream(lambda result, error: answers.put(error or result), headers=headers)
        tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
        client.async_stream_infer("pre", [tensor])
        repeated = grpcclient.InferInput("IN", [2], "INT32")
        repeated.set_data_from_numpy(np.array([1, 2], np.int32))
        client.async_stream_infer("repeat", [repeated], enable_empty_final_response=True)
        while not isinstance(answer := answers.get(timeout=60), Exception):
            response = answer.get_response()
            final = response.parameters["triton_final_response"].bool_param
            if final and response.model_name == "repeat":
                break
        client.stop_stream()
    assert not isinstance(answer, Exception), answer
    # `pre`: the request, decode, queue, execution, encode; `repeat`: the request, queue,
    # execution (the engine's span: its responses are encoded as they come).
    spans = trace_of(received, trace_id, 5 + 3)
    roots = {s.name: s for s in spans if s.name.startswith("infer ")}
    assert set(roots) == {"infer pre", "infer repeat"}
    assert {r.parent_id for r in roots.values()} == {client_span}
    assert set(children(spans, roots["infer repeat"])) == {"queue", "execute repeat"}


def test_the_openai_routes_continue_a_client_trace(
    http_exported: tuple[RunningServer, Received],
) -> None:
    server, received = http_exported
    trace_id, client_span, headers = client_context()
    body = json.dumps({"model": "tiny_embed", "input": ["a rabbit", "a watch"]})
    status, _, answer = request(
        server.http_port, "POST", "/v1/embeddings", body, {**headers, "Content-Type": "json"}
    )
    assert status == 200, answer

    def roots() -> list[Span]:
        spans = [s for s in received.snapshot() if s.trace_id == trace_id]
        return [s for s in spans if s.name == "infer tiny_embed"]

    eventually(lambda: len(roots()) == 2)  # one request per text
    assert {r.parent_id for r in roots()} == {client_span}
