"""Prometheus metrics, named as Triton names them so existing dashboards keep working.

The Triton counters are read from `Statistics` when scraped, so the request path pays
nothing extra for them and /metrics always agrees with the statistics extension. The only
per-request work here is the latency histogram: a bisect and two additions on the event
loop, no lock (prometheus-client's own metrics take a lock per update).

Triton exposes its counters without the `_total` suffix that prometheus-client adds to
the `counter` type, so they are exported untyped under their exact Triton names.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from inferd.core.statistics import Duration, VersionStatistics
from inferd.core.types import Timestamps
from inferd.metrics.statistics import Statistics

LABELS = ["model", "version"]
# Seconds; from sub-millisecond in-process models to multi-second generative ones.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

PendingCounts = Callable[[], list[tuple[str, str, int]]]  # (model, version, pending)
InstanceDevices = Callable[[], list[tuple[str, str, str, str]]]  # (model, version, name, device)

_COUNTS: list[tuple[str, str, Callable[[VersionStatistics], int]]] = [
    (
        "nv_inference_request_success",
        "Number of successful inference requests, all batch sizes",
        lambda s: s.success.count,
    ),
    (
        "nv_inference_request_failure",
        "Number of failed inference requests, all batch sizes",
        lambda s: s.fail.count,
    ),
    (
        # Triton splits its failure counter by a `reason` label instead; a label here would
        # change the samples existing dashboards of this server read, so it is a counter of its own.
        "inferd_inference_request_cancelled",
        "Number of inference requests cancelled by their client (also counted as failures)",
        lambda s: s.cancelled,
    ),
    (
        "nv_inference_count",
        "Number of inferences performed (rows; a batch of 8 counts 8)",
        lambda s: s.inference_count,
    ),
    (
        "nv_inference_exec_count",
        "Number of model executions performed (a batch counts 1)",
        lambda s: s.execution_count,
    ),
]

_DURATIONS: list[tuple[str, str, Callable[[VersionStatistics], int]]] = [
    (
        "nv_inference_request_duration_us",
        "Cumulative inference request duration in microseconds (successful and failed)",
        lambda s: _us(s.success, s.fail),
    ),
    (
        "nv_inference_queue_duration_us",
        "Cumulative inference queuing duration in microseconds",
        lambda s: _us(s.queue),
    ),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input duration in microseconds",
        lambda s: _us(s.compute_input),
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds",
        lambda s: _us(s.compute_infer),
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative inference compute output duration in microseconds",
        lambda s: _us(s.compute_output),
    ),
]


def _us(*durations: Duration) -> int:
    return sum(d.ns for d in durations) // 1000


@dataclass(slots=True)
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    sum_s: float = 0.0


class PrometheusMetrics(Collector):
    """An `Observer` (for the latency histogram) and a prometheus-client collector.

    `pending` is asked for the queued requests of every serving version at scrape time.
    """

    def __init__(self, statistics: Statistics, pending: PendingCounts | None = None) -> None:
        self._statistics = statistics
        self._pending = pending
        self._instances: InstanceDevices | None = None
        self._latency: dict[tuple[str, str], _Histogram] = {}

    def watch_pending(self, pending: PendingCounts) -> None:
        """Set where pending counts come from (the engine exists only after its observers)."""
        self._pending = pending

    def watch_instances(self, instances: InstanceDevices) -> None:
        """Set where the instances of serving versions and their devices come from."""
        self._instances = instances

    def registry(self) -> CollectorRegistry:
        """A registry holding only these metrics."""
        registry = CollectorRegistry(auto_describe=True)
        registry.register(self)
        return registry

    # ---- Observer ----------------------------------------------------------------------------

    def model_versions_changed(self, model_name: str, versions: Sequence[str]) -> None:
        for key in [k for k in self._latency if k[0] == model_name and k[1] not in versions]:
            del self._latency[key]

    def request_finished(
        self,
        model_name: str,
        model_version: str,
        timestamps: Timestamps,
        success: bool,
        inferred_rows: int = 0,
        cancelled: bool = False,
    ) -> None:
        key = (model_name, model_version)
        histogram = self._latency.get(key)
        if histogram is None:
            histogram = self._latency[key] = _Histogram()
        seconds = (timestamps.sent - timestamps.received) / 1e9
        histogram.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        histogram.sum_s += seconds

    def batch_executed(
        self, model_name: str, model_version: str, batch_size: int, compute: Timestamps
    ) -> None:
        """Counted by `Statistics`, read at scrape time."""

    # ---- Collector ---------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        snapshot = self._statistics.snapshot()
        for name, documentation, value in _COUNTS + _DURATIONS:
            # "unknown" keeps Triton's exact sample names (a "counter" would gain "_total").
            family = Metric(name, documentation, "unknown")
            for stats in snapshot:
                family.add_sample(
                    name, {"model": stats.name, "version": stats.version}, value(stats)
                )
            yield family
        yield self._pending_family()
        yield self._instance_family()
        yield self._latency_family()

    def _pending_family(self) -> Metric:
        family = GaugeMetricFamily(
            "nv_inference_pending_request_count",
            "Instantaneous number of pending requests awaiting execution per-model",
            labels=LABELS,
        )
        for model, version, count in self._pending() if self._pending else []:
            family.add_metric([model, version], count)
        return family

    def _instance_family(self) -> Metric:
        # Triton labels only its GPU metrics by device; an info-style gauge places every instance.
        family = GaugeMetricFamily(
            "inferd_model_instance",
            "One per model instance of a serving version, labelled with its device",
            labels=[*LABELS, "instance", "device"],
        )
        for model, version, instance, device in self._instances() if self._instances else []:
            family.add_metric([model, version, instance, device], 1)
        return family

    def _latency_family(self) -> Metric:
        family = HistogramMetricFamily(
            "inferd_request_duration_seconds",
            "Latency of inference requests inside the server (received to sent), in seconds",
            labels=LABELS,
        )
        bounds = [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
        for (model, version), histogram in sorted(self._latency.items()):
            cumulative: list[tuple[str, float]] = []
            total = 0
            for bound, count in zip(bounds, histogram.buckets, strict=True):
                total += count
                cumulative.append((bound, total))
            family.add_metric([model, version], cumulative, histogram.sum_s)
        return family
