"""Triton's latency summaries and first-response histogram, through the Prometheus text a
scrape returns; and the `--metrics-config` keys that set them."""

from __future__ import annotations

import math
import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferd.core.types import Timestamps
from inferd.metrics.options import DEFAULT_QUANTILES, metrics_options
from inferd.metrics.prometheus import PrometheusMetrics
from inferd.metrics.statistics import Statistics
from inferd.metrics.summaries import KEPT, LatencySummaries

US = 1_000
S = 1_000_000_000


def served(sent: int, queue_us: int) -> Timestamps:
    """A request sent at `sent` ns: queued `queue_us`, 1/2/3 µs of compute, 10 µs to send,
    100 µs in all plus its queueing."""
    queued = sent - 10 * US - 6 * US - queue_us * US
    start = queued + queue_us * US
    marks = (queued, start, start + US, start + 3 * US, start + 6 * US, sent)
    return Timestamps(queued - 84 * US, *marks)


def samples(metrics: PrometheusMetrics) -> dict[tuple[str, str], float]:
    text = generate_latest(metrics.registry()).decode()
    return {
        (sample.name, sample.labels.get("quantile", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("model") == "m"
    }


def fed(
    quantiles: tuple[tuple[float, float], ...], requests: list[Timestamps]
) -> PrometheusMetrics:
    stats = Statistics()
    metrics = PrometheusMetrics(stats, quantiles=quantiles)
    for observer in (stats, metrics):
        observer.model_versions_changed("m", ["1"])
        for timestamps in requests:
            observer.request_finished("m", "1", timestamps, success=True)
        observer.request_finished("m", "1", Timestamps(received=0, sent=5), success=False)
    return metrics


def test_quantiles_count_and_sum_of_the_successful_requests() -> None:
    now = time.monotonic_ns()  # a scrape's window ends at the time it is taken
    metrics = fed(((0.5, 0.05), (0.9, 0.01)), [served(now, queue_us=q) for q in range(1, 101)])
    got = samples(metrics)
    assert got["nv_inference_queue_summary_us", "0.5"] == 50.0
    assert got["nv_inference_queue_summary_us", "0.9"] == 90.0
    assert got["nv_inference_queue_summary_us_count", ""] == 100
    assert got["nv_inference_queue_summary_us_sum", ""] == sum(range(1, 101))
    assert got["nv_inference_compute_input_summary_us", "0.9"] == 1.0
    assert got["nv_inference_compute_infer_summary_us", "0.5"] == 2.0
    assert got["nv_inference_compute_output_summary_us", "0.5"] == 3.0
    assert got["nv_inference_request_summary_us_count", ""] == 100  # not the failed one
    assert got["nv_inference_request_summary_us", "0.5"] == 100 + 50  # 100 µs + queueing


def test_observations_leave_the_window_after_a_minute() -> None:
    summaries = LatencySummaries(DEFAULT_QUANTILES)
    summaries.observe("m", "1", served(10 * S, queue_us=7))
    stats = Statistics()
    stats.model_versions_changed("m", ["1"])
    stats.request_finished("m", "1", served(10 * S, queue_us=7), success=True)

    def queue_samples(now: int) -> list[float]:
        (family,) = [f for f in summaries.families(stats.snapshot(), now) if "queue" in f.name]
        return [s.value for s in family.samples if "quantile" in s.labels]

    assert queue_samples(11 * S) == [7.0] * len(DEFAULT_QUANTILES)
    assert all(math.isnan(v) for v in queue_samples(71 * S))


def test_summaries_are_absent_by_default() -> None:
    metrics = fed((), [served(time.monotonic_ns(), queue_us=1)])
    assert not [name for name, _ in samples(metrics) if "_summary_us" in name]


def test_first_response_histogram_in_milliseconds() -> None:
    stats = Statistics()
    metrics = PrometheusMetrics(stats)
    ms = 1_000_000
    streamed = Timestamps(received=0, sent=9_000 * ms, first_response=300 * ms)
    for observer in (stats, metrics):
        observer.model_versions_changed("m", ["1"])
        observer.request_finished("m", "1", Timestamps(received=0, sent=50 * ms), success=True)
        observer.request_finished("m", "1", streamed, success=True)
        observer.request_finished("m", "1", Timestamps(received=0, sent=ms), success=False)
    text = generate_latest(metrics.registry()).decode()
    labels = 'model="m",version="1"'
    name = "nv_inference_first_response_histogram_ms"
    for line in (
        f'{name}_bucket{{le="100",{labels}}} 1.0',
        f'{name}_bucket{{le="500",{labels}}} 2.0',
        f'{name}_bucket{{le="+Inf",{labels}}} 2.0',
        f"{name}_count{{{labels}}} 2.0",
        f"{name}_sum{{{labels}}} 350.0",
    ):
        assert line in text, line


@pytest.mark.parametrize(
    ("config", "quantiles"),
    [
        ((), ()),
        (("summary_latencies=true",), DEFAULT_QUANTILES),
        (
            ("summary_latencies=true", "summary_quantiles=0.5:0.05,0.99:0.001"),
            ((0.5, 0.05), (0.99, 0.001)),
        ),
        # INFERD_METRICS_CONFIG splits at commas: the quantile list continues.
        (
            ("summary_quantiles=0.5:0.05", "0.9:0.01", "summary_latencies=TRUE"),
            ((0.5, 0.05), (0.9, 0.01)),
        ),
        (("summary_quantiles=0.5:0.05", "summary_latencies=false"), ()),
    ],
)
def test_summary_options(
    config: tuple[str, ...], quantiles: tuple[tuple[float, float], ...]
) -> None:
    assert metrics_options("", config).quantiles == quantiles


def test_a_busy_bucket_keeps_an_even_sample() -> None:
    summaries = LatencySummaries(((0.5, 0.05), (0.9, 0.01)))
    stats = Statistics()
    stats.model_versions_changed("m", ["1"])
    now = time.monotonic_ns()
    requests = 5 * KEPT
    for index in range(requests):
        summaries.observe("m", "1", served(now, queue_us=index % 1000))
    (window,) = summaries._windows.values()
    assert len(window.buckets[-1][1][1]) < KEPT  # the queue durations, thinned
    (family,) = [f for f in summaries.families(stats.snapshot(), now) if "queue" in f.name]
    median, p90 = [s.value for s in family.samples if "quantile" in s.labels]
    # Queue durations spread evenly over 0..999 µs: each quantile within its rank error.
    assert 450 <= median <= 550
    assert 890 <= p90 <= 910


def test_a_cache_hit_waits_nothing_and_computes_nothing() -> None:
    now = time.monotonic_ns()
    hit = Timestamps(received=now - 30 * US, sent=now, cache_hit_ns=5 * US)
    metrics = fed(((0.5, 0.05),), [served(now, queue_us=40), hit])
    got = samples(metrics)
    assert got["nv_inference_queue_summary_us_count", ""] == 2  # from the statistics
    assert got["nv_inference_queue_summary_us", "0.5"] == 0.0  # the hit's 0 is the lower
    assert got["nv_inference_compute_infer_summary_us_count", ""] == 1
    assert got["nv_inference_request_summary_us", "0.5"] == 30.0


def test_cache_summaries_only_where_the_cache_was_met() -> None:
    now = time.monotonic_ns()
    hit = Timestamps(received=now - 30 * US, sent=now, cache_hit_ns=5 * US)
    miss = served(now, queue_us=40)
    miss.cache_miss_ns = 7 * US
    got = samples(fed(((0.5, 0.05),), [hit, miss]))
    assert got["nv_cache_hit_summary_per_model", "0.5"] == 5.0
    assert got["nv_cache_hit_summary_per_model_count", ""] == 1
    assert got["nv_cache_miss_summary_per_model", "0.5"] == 7.0
    assert got["nv_cache_miss_summary_per_model_sum", ""] == 7.0
    uncached = samples(fed(((0.5, 0.05),), [served(now, queue_us=1)]))
    assert not [name for name, _ in uncached if "cache" in name and "summary" in name]


def test_a_version_using_the_cache_has_cache_summaries_and_no_request_summary() -> None:
    metrics = fed(((0.5, 0.05),), [served(time.monotonic_ns(), queue_us=1)])
    metrics.watch_cache(lambda: [("m", "1")])
    got = samples(metrics)
    assert not [name for name, _ in got if name.startswith("nv_inference_request_summary")]
    assert got["nv_cache_hit_summary_per_model_count", ""] == 0  # from its load, as in Triton
    assert got["nv_inference_queue_summary_us_count", ""] == 1
