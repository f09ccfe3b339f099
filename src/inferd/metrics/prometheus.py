"""Prometheus metrics, named as Triton names them so existing dashboards keep working.

The Triton counters are read from `Statistics` when scraped, so the request path pays
nothing extra for them and /metrics always agrees with the statistics extension. The only
per-request work here is in `RequestMetrics` (latency histograms, failures by reason): a
bisect and two additions per histogram on the event loop, no lock (prometheus-client's own
metrics take a lock per update). Per-batch and load metrics are in `ModelMetrics`.

Triton exposes its counters without the `_total` suffix that prometheus-client adds to
the `counter` type, so they are exported untyped under their exact Triton names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inferd.core.errors import InferdError
from inferd.core.model_config import ModelConfig
from inferd.core.observer import FailureReason
from inferd.core.statistics import Duration, VersionStatistics
from inferd.core.types import Timestamps
from inferd.metrics.models import ModelMetrics
from inferd.metrics.options import DEFAULT_BUCKETS
from inferd.metrics.requests import LABELS, RequestMetrics, config_buckets
from inferd.metrics.statistics import Statistics
from inferd.metrics.summaries import LatencySummaries

PendingCounts = Callable[[], list[tuple[str, str, int]]]  # (model, version, requests)
InstanceDevices = Callable[[], list[tuple[str, str, str, str]]]  # (model, version, name, device)
WarmupDurations = Callable[[], list[tuple[str, str, float]]]  # (model, version, seconds)
CachedVersions = Callable[[], list[tuple[str, str]]]  # (model, version) using the cache

_COUNTS: list[tuple[str, str, Callable[[VersionStatistics], int]]] = [
    (
        "nv_inference_request_success",
        "Number of successful inference requests, all batch sizes",
        lambda s: s.success.count,
    ),
    (
        # Also in `nv_inference_request_failure{reason="CANCELED"}`, as Triton counts them.
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
    (
        "nv_cache_num_hits_per_model",
        "Number of response cache hits per model",
        lambda s: s.cache_hit.count,
    ),
    (
        "nv_cache_num_misses_per_model",
        "Number of response cache misses per model",
        lambda s: s.cache_miss.count,
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
    (
        "nv_cache_hit_duration_per_model",
        "Cumulative time requests spend retrieving a cached response per model on cache hits "
        "(microseconds)",
        lambda s: _us(s.cache_hit),
    ),
    (
        "nv_cache_miss_duration_per_model",
        "Cumulative time requests spend looking up and inserting responses into the cache on "
        "a cache miss (microseconds)",
        lambda s: _us(s.cache_miss),
    ),
]


def _us(*durations: Duration) -> int:
    return sum(d.ns for d in durations) // 1000


class PrometheusMetrics(Collector):
    """An `Observer` (for what `Statistics` does not count) and a prometheus-client collector.

    `pending` is asked for the queued requests of every serving version at scrape time.
    Latency histograms use `buckets` (seconds) and are left out when `histograms` is off;
    Triton's latency summaries are exported with `quantiles` ((quantile, error) pairs), none
    when it is empty.
    """

    def __init__(
        self,
        statistics: Statistics,
        pending: PendingCounts | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        histograms: bool = True,
        quantiles: Sequence[tuple[float, float]] = (),
    ) -> None:
        self._statistics = statistics
        self._pending = pending
        self._in_flight: PendingCounts | None = None
        self._instances: InstanceDevices | None = None
        self._warmups: WarmupDurations | None = None
        self._cached: CachedVersions | None = None
        self._requests = RequestMetrics(buckets, histograms)
        self._models = ModelMetrics()
        self._summaries = LatencySummaries(quantiles) if quantiles else None

    def watch_pending(self, pending: PendingCounts, in_flight: PendingCounts | None = None) -> None:
        """Set where pending (and in-flight) counts come from (the engine exists only after
        its observers)."""
        self._pending = pending
        self._in_flight = in_flight

    def watch_instances(self, instances: InstanceDevices) -> None:
        """Set where the instances of serving versions and their devices come from."""
        self._instances = instances

    def watch_warmups(self, warmups: WarmupDurations) -> None:
        """Set where the warmup durations of serving versions come from."""
        self._warmups = warmups

    def watch_configs(self, config_of: Callable[[str, str], ModelConfig]) -> None:
        """Set where the config of a serving version comes from (its histogram buckets)."""

        def buckets_of(model_name: str, version: str) -> dict[str, tuple[float, ...]]:
            try:
                return config_buckets(model_name, config_of(model_name, version))
            except InferdError:  # unloaded meanwhile
                return {}

        self._requests.watch_buckets(buckets_of)

    def watch_cache(self, cached: CachedVersions) -> None:
        """Set where the serving versions that use the response cache come from (Triton gives
        them cache summaries and no request summary)."""
        self._cached = cached

    def registry(self) -> CollectorRegistry:
        """A registry holding only these metrics."""
        registry = CollectorRegistry(auto_describe=True)
        registry.register(self)
        return registry

    # ---- Observer ----------------------------------------------------------------------------

    def model_versions_changed(self, model_name: str, versions: Sequence[str]) -> None:
        self._requests.keep(model_name, versions)
        self._models.keep(model_name, versions)
        if self._summaries is not None:
            self._summaries.keep(model_name, versions)

    def request_finished(
        self,
        model_name: str,
        model_version: str,
        timestamps: Timestamps,
        success: bool,
        inferred_rows: int = 0,
        cancelled: bool = False,
        failure: FailureReason | None = None,
    ) -> None:
        self._requests.finished(model_name, model_version, timestamps, success)
        if success and self._summaries is not None:
            self._summaries.observe(model_name, model_version, timestamps)

    def batch_executed(
        self,
        model_name: str,
        model_version: str,
        batch_size: int,
        compute: Timestamps,
        instance: str = "",
        padding: int = 0,
    ) -> None:
        """Rows and times are counted by `Statistics`, read at scrape time."""
        self._models.executed(model_name, model_version, instance)

    def version_load_finished(
        self, model_name: str, model_version: str, seconds: float, loaded: bool
    ) -> None:
        self._models.load_finished(model_name, model_version, seconds, loaded)

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
        yield _failure_family(snapshot)
        yield from self._requests.families()
        if self._summaries is not None:
            cached = set(self._cached()) if self._cached else set()
            yield from self._summaries.families(snapshot, time.monotonic_ns(), cached)
        yield _count_family(
            "nv_inference_pending_request_count",
            "Instantaneous number of pending requests awaiting execution per-model",
            self._pending,
        )
        yield _count_family(
            "inferd_inference_in_flight_request_count",
            "Instantaneous number of requests inside the server per model: queued, executing "
            "or streaming responses",
            self._in_flight,
        )
        yield self._instance_family()
        yield self._warmup_family()
        yield from self._models.families(snapshot)

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

    def _warmup_family(self) -> Metric:
        family = GaugeMetricFamily(
            "inferd_model_warmup_duration_seconds",
            "How long the model_warmup of each serving version took on its instances, in seconds",
            labels=LABELS,
        )
        for model, version, seconds in self._warmups() if self._warmups else []:
            family.add_metric([model, version], seconds)
        return family


def _failure_family(snapshot: Sequence[VersionStatistics]) -> Metric:
    """Triton's failure counter, one sample per reason (every reason, so absent means 0 is
    never ambiguous)."""
    name = "nv_inference_request_failure"
    family = Metric(name, "Number of failed inference requests, all batch sizes", "unknown")
    for stats in snapshot:
        for reason in FailureReason:
            labels = {"model": stats.name, "version": stats.version, "reason": reason.value}
            family.add_sample(name, labels, stats.failure_reasons.get(reason.value, 0))
    return family


def _count_family(name: str, documentation: str, counts: PendingCounts | None) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=LABELS)
    for model, version, count in counts() if counts else []:
        family.add_metric([model, version], count)
    return family
