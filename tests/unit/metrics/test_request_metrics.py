"""Latency histograms, failure reasons, batch sizes, load records and the GPU collector's
absence, through the Prometheus text a scrape returns."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import generate_latest

from inferd.core.errors import InstanceLost, InvalidArgument, ModelExecutionError, Unavailable
from inferd.core.model_config import parse_pbtxt
from inferd.core.observer import FailureReason, failure_reason
from inferd.core.types import Timestamps
from inferd.metrics.gpu import open_gpu_metrics
from inferd.metrics.options import metrics_options, parse_buckets
from inferd.metrics.prometheus import PrometheusMetrics
from inferd.metrics.requests import RequestMetrics, config_buckets
from inferd.metrics.statistics import Statistics

MS = 1_000_000


def served(queue_ms: int, compute_ms: int) -> Timestamps:
    queued = 1 * MS
    start = queued + queue_ms * MS
    end = start + compute_ms * MS
    return Timestamps(
        received=0,
        queued=queued,
        compute_start=start,
        compute_input_end=start,
        compute_output_start=end,
        compute_end=end,
        sent=end + MS,
    )


def scrape(*observers: PrometheusMetrics) -> list[str]:
    return generate_latest(observers[0].registry()).decode().splitlines()


def test_each_histogram_counts_its_phase_in_the_configured_buckets() -> None:
    stats = Statistics()
    metrics = PrometheusMetrics(stats, buckets=(0.005, 0.05))
    for observer in (stats, metrics):
        observer.model_versions_changed("m", ["1"])
        observer.request_finished("m", "1", served(queue_ms=1, compute_ms=20), success=True)
        observer.request_finished("m", "1", served(queue_ms=30, compute_ms=2), success=True)
        observer.request_finished("m", "1", Timestamps(received=0, sent=90 * MS), success=False)

    text = scrape(metrics)
    labels = 'model="m",version="1"'
    for line in (
        f'inferd_request_duration_seconds_bucket{{le="0.005",{labels}}} 0.0',
        f'inferd_request_duration_seconds_bucket{{le="0.05",{labels}}} 2.0',
        f'inferd_request_duration_seconds_bucket{{le="+Inf",{labels}}} 3.0',
        f'inferd_queue_duration_seconds_bucket{{le="0.005",{labels}}} 1.0',
        f'inferd_queue_duration_seconds_bucket{{le="0.05",{labels}}} 2.0',
        f"inferd_queue_duration_seconds_count{{{labels}}} 2.0",
        f"inferd_queue_duration_seconds_sum{{{labels}}} 0.031",
        f'inferd_compute_duration_seconds_bucket{{le="0.005",{labels}}} 1.0',
        f"inferd_compute_duration_seconds_count{{{labels}}} 2.0",
    ):
        assert line in text, line


def test_histograms_can_be_left_out() -> None:
    metrics = PrometheusMetrics(Statistics(), histograms=False)
    metrics.request_finished("m", "1", served(1, 1), success=True)
    assert not [line for line in scrape(metrics) if "_duration_seconds_" in line]


def test_failures_are_counted_under_every_reason() -> None:
    stats = Statistics()
    metrics = PrometheusMetrics(stats)
    stats.model_versions_changed("m", ["1"])
    failed = Timestamps(received=0, sent=10)
    for reason in (FailureReason.REJECTED, FailureReason.BACKEND, FailureReason.BACKEND):
        stats.request_finished("m", "1", failed, False, failure=reason)
    stats.request_finished("m", "1", failed, False, 0, cancelled=True)

    text = scrape(metrics)
    for reason, count in (("REJECTED", 1), ("CANCELED", 1), ("BACKEND", 2), ("OTHER", 0)):
        line = f'nv_inference_request_failure{{model="m",reason="{reason}",version="1"}} {count}.0'
        assert line in text


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (asyncio.CancelledError(), FailureReason.CANCELED),
        (Unavailable("queue full"), FailureReason.REJECTED),
        (ModelExecutionError("raised"), FailureReason.BACKEND),
        (InstanceLost("gone"), FailureReason.BACKEND),
        (InvalidArgument("shape"), FailureReason.OTHER),
        (RuntimeError("bug"), FailureReason.OTHER),
    ],
)
def test_failure_reason_of_an_error(error: BaseException, reason: FailureReason) -> None:
    assert failure_reason(error) is reason


def test_batch_sizes_executions_per_instance_and_loads() -> None:
    stats = Statistics()
    metrics = PrometheusMetrics(stats)
    stats.model_versions_changed("m", ["1"])
    compute = served(0, 1)
    for rows, instance in ((1, "m_0"), (3, "m_0"), (8, "m_1"), (100, "m_1")):
        stats.batch_executed("m", "1", rows, compute, instance)
        metrics.batch_executed("m", "1", rows, compute, instance)
    metrics.version_load_finished("m", "1", 0.25, True)
    metrics.version_load_finished("bad", "1", 0.5, False)

    text = scrape(metrics)
    labels = 'model="m",version="1"'
    for line in (
        f'inferd_batch_size_bucket{{le="1",{labels}}} 1.0',
        f'inferd_batch_size_bucket{{le="4",{labels}}} 2.0',
        f'inferd_batch_size_bucket{{le="8",{labels}}} 3.0',
        f'inferd_batch_size_bucket{{le="64",{labels}}} 3.0',
        f'inferd_batch_size_bucket{{le="128",{labels}}} 4.0',
        f"inferd_batch_size_sum{{{labels}}} 112.0",
        f'inferd_instance_executions_total{{instance="m_0",{labels}}} 2.0',
        f'inferd_instance_executions_total{{instance="m_1",{labels}}} 2.0',
        f"inferd_model_load_duration_seconds{{{labels}}} 0.25",
        'inferd_model_load_failures_total{model="bad",version="1"} 1.0',
    ):
        assert line in text, line
    metrics.model_versions_changed("m", [])
    assert not [line for line in scrape(metrics) if line.startswith("inferd_instance_exec")]


@pytest.mark.parametrize(
    ("buckets", "config", "expected"),
    [
        ("", (), ((0.0005,), True)),
        ("0.1, 1,10", ("histogram_latencies=false",), ((0.1, 1.0, 10.0), False)),
        ("", ("histogram_latencies=TRUE",), ((0.0005,), True)),
    ],
)
def test_histogram_options(
    buckets: str, config: tuple[str, ...], expected: tuple[tuple[float, ...], bool]
) -> None:
    options = metrics_options(buckets, config)
    assert (options.buckets[: len(expected[0])], options.histograms) == expected


@pytest.mark.parametrize("text", ["", "a,b", "0,1", "1,1", "2,1", "-1"])
def test_bad_buckets_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--metrics-buckets"):
        parse_buckets(text)


@pytest.mark.parametrize(
    "item",
    [
        "counter_latencies=false",
        "histogram_latencies=maybe",
        "summary_latencies=1",
        "summary_quantiles=0.5",
        "summary_quantiles=1.5:0.1",
        "summary_quantiles=a:b",
        "x",
    ],
)
def test_unsupported_metrics_config_is_refused(item: str) -> None:
    with pytest.raises(ValueError, match="--metrics-config"):
        metrics_options("", (item,))


def test_no_gpu_metrics_without_nvml_or_a_gpu() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError:
        count = 0
    if count:
        pytest.skip("a GPU is present: tests/integration/test_gpu_metrics.py covers it")
    assert open_gpu_metrics() is None


def test_a_configs_buckets_by_family_and_what_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    config = parse_pbtxt(
        'name: "m"\nmodel_metrics { metric_control [\n'
        '  { metric_identifier { family: "inferd_compute_duration_seconds" }'
        "    histogram_options { buckets: [ 0.5, 1 ] } },\n"
        '  { metric_identifier { family: "inferd_queue_duration_seconds" }'
        "    histogram_options { buckets: [ 2, 1 ] } },\n"
        '  { metric_identifier { family: "nv_gpu_utilization" }'
        "    histogram_options { buckets: [ 1 ] } } ] }\n"
    )
    with caplog.at_level(logging.WARNING, "inferd.metrics.requests"):
        assert config_buckets("m", config) == {"inferd_compute_duration_seconds": (0.5, 1.0)}
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "nv_gpu_utilization" in warned and "strictly increasing" in warned


def test_a_version_loaded_with_other_buckets_starts_its_histograms_afresh() -> None:
    metrics = RequestMetrics()
    own = {"inferd_request_duration_seconds": (1.0,)}
    metrics.watch_buckets(lambda model, version: own)
    metrics.keep("m", ["1"])
    metrics.finished("m", "1", served(1, 1), True)
    own = {"inferd_request_duration_seconds": (2.0,)}
    metrics.keep("m", ["1"])  # reloaded
    metrics.finished("m", "1", served(1, 1), True)
    (family, *_) = metrics.families()
    assert [(s.labels.get("le"), s.value) for s in family.samples if s.name.endswith("bucket")] == [
        ("2.0", 1.0),  # the new bound, and only the request since
        ("+Inf", 1.0),
    ]
