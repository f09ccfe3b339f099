"""`--trace-config` in OpenTelemetry mode: the exporter's settings, Triton's mode-prefixed
syntax, and which requests the trace settings pick for spans (`TritonTracer.sample`)."""

from __future__ import annotations

import pytest

from inferd.core.errors import InvalidArgument
from inferd.metrics.otel_config import OtelSettings, otel_settings
from inferd.metrics.trace_settings import start_settings
from inferd.metrics.triton_trace import TritonTracer

FLAGS = [
    "mode=opentelemetry",
    "triton,file=/tmp/t.json",
    "triton,log-frequency=5",
    "opentelemetry,url=collector:4318/v1/traces",
    "opentelemetry,protocol=grpc",
    "opentelemetry,resource=service.name=ranker",
    "opentelemetry,resource=deployment.environment=prod",
    "opentelemetry,bsp_schedule_delay=200",
    "opentelemetry,bsp_max_export_batch_size=64",
    "rate=0",
]


def test_flags_split_between_the_trace_settings_and_the_exporter() -> None:
    assert start_settings(FLAGS) == {
        "trace_mode": ["opentelemetry"],
        "trace_file": ["/tmp/t.json"],
        "log_frequency": ["5"],
        "trace_rate": ["0"],
    }
    assert otel_settings(FLAGS) == OtelSettings(
        url="collector:4318/v1/traces",
        protocol="grpc",
        resource={"service.name": "ranker", "deployment.environment": "prod"},
        processor={"schedule_delay_millis": 200, "max_export_batch_size": 64},
    )


@pytest.mark.parametrize(
    "item",
    [
        "opentelemetry,colour=red",
        "opentelemetry,url",
        "opentelemetry,protocol=carrier-pigeon",
        "opentelemetry,resource=novalue",
        "opentelemetry,bsp_max_queue_size=0",
        "opentelemetry,bsp_schedule_delay=soon",
    ],
)
def test_bad_exporter_settings_are_refused(item: str) -> None:
    with pytest.raises(InvalidArgument, match="--trace-config"):
        otel_settings([item])


@pytest.mark.parametrize(
    "items", [["jaeger,url=x"], ["rate=0"], ["mode=opentelemetry", "mode=triton", "rate=0"]]
)
def test_bad_trace_settings_are_refused(items: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        start_settings(items)


def spans_tracer(**settings: str) -> TritonTracer:
    start = {"trace_mode": ["opentelemetry"], "trace_level": ["TIMESTAMPS"]}
    start.update({f"trace_{key}": [value] for key, value in settings.items()})
    return TritonTracer(start, opentelemetry=True)


def picked(tracer: TritonTracer, model: str, requests: int, propagated: bool = False) -> int:
    return sum(tracer.sample(model, propagated) for _ in range(requests))


def test_spans_follow_the_rate_and_count_and_a_client_context_always() -> None:
    tracer = spans_tracer(rate="3", count="2")
    assert tracer.spans_active
    assert picked(tracer, "m", 9) == 2  # the 3rd and 6th; then the count is spent
    assert picked(tracer, "m", 4, propagated=True) == 4
    tracer.update_trace_settings("", {"trace_rate": ["0"]})
    assert picked(tracer, "m", 5) == 0
    assert picked(tracer, "m", 1, propagated=True) == 1


def test_a_model_may_trace_the_triton_way_while_others_make_spans() -> None:
    tracer = spans_tracer(rate="1")
    tracer.update_trace_settings("files", {"trace_mode": ["triton"]})
    assert picked(tracer, "files", 3, propagated=True) == 0
    assert picked(tracer, "other", 3) == 3
    tracer.update_trace_settings("", {"trace_level": ["OFF"]})
    assert not tracer.spans_active
    assert picked(tracer, "other", 3, propagated=True) == 0


def test_spans_need_a_server_started_for_them() -> None:
    tracer = TritonTracer()
    with pytest.raises(InvalidArgument, match="mode=opentelemetry"):
        tracer.update_trace_settings("", {"trace_mode": ["opentelemetry"]})
    with pytest.raises(InvalidArgument, match="trace_rate 0"):
        spans_tracer().update_trace_settings("m", {"trace_mode": ["triton"], "trace_rate": ["0"]})
    assert not tracer.spans_active
