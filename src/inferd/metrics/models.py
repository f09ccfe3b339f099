"""Metrics of models rather than requests: executions per instance, batch sizes, loads.

Executions are counted once per batch; batch sizes are read from `Statistics` at scrape time,
so neither costs the request path anything per request.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from inferd.core.statistics import VersionStatistics
from inferd.metrics.requests import LABELS, cumulative

# Rows per execution; powers of two, as max_batch_size and preferred batch sizes usually are.
BATCH_SIZE_BUCKETS = tuple(2**n for n in range(11))


class ModelMetrics:
    """Executions per instance and the last load of each version, as observed."""

    def __init__(self) -> None:
        self._executions: dict[tuple[str, str, str], int] = {}
        self._load_seconds: dict[tuple[str, str], float] = {}
        self._load_failures: dict[tuple[str, str], int] = {}

    def keep(self, model_name: str, versions: Sequence[str]) -> None:
        """Drop the execution counts of versions of `model_name` that no longer serve (load
        records stay: a version that failed to load never serves, and that is worth seeing)."""
        for key in [k for k in self._executions if k[0] == model_name and k[1] not in versions]:
            del self._executions[key]

    def executed(self, model_name: str, model_version: str, instance: str) -> None:
        key = (model_name, model_version, instance)
        self._executions[key] = self._executions.get(key, 0) + 1

    def load_finished(self, model_name: str, version: str, seconds: float, loaded: bool) -> None:
        key = (model_name, version)
        self._load_seconds[key] = seconds
        if not loaded:
            self._load_failures[key] = self._load_failures.get(key, 0) + 1

    def families(self, snapshot: Sequence[VersionStatistics]) -> Iterator[Metric]:
        executions = CounterMetricFamily(
            "inferd_instance_executions",
            "Number of model executions (batches) each instance ran",
            labels=[*LABELS, "instance"],
        )
        for (model, version, instance), count in sorted(self._executions.items()):
            executions.add_metric([model, version, instance], count)
        yield executions
        yield batch_size_family(snapshot)
        seconds = GaugeMetricFamily(
            "inferd_model_load_duration_seconds",
            "How long the last load of each model version took (loaded or failed), in seconds",
            labels=LABELS,
        )
        for (model, version), value in sorted(self._load_seconds.items()):
            seconds.add_metric([model, version], value)
        yield seconds
        failures = CounterMetricFamily(
            "inferd_model_load_failures",
            "Number of failed loads of each model version",
            labels=LABELS,
        )
        for (model, version), count in sorted(self._load_failures.items()):
            failures.add_metric([model, version], count)
        yield failures


def batch_size_family(snapshot: Sequence[VersionStatistics]) -> Metric:
    family = HistogramMetricFamily(
        "inferd_batch_size",
        "Rows per model execution, over every request of the batch",
        labels=LABELS,
    )
    bounds = [*(str(b) for b in BATCH_SIZE_BUCKETS), "+Inf"]
    for stats in snapshot:
        counts = [0] * len(bounds)
        rows = 0
        for batch in stats.batch_stats:
            executions = batch.compute_infer.count
            index = next((i for i, b in enumerate(BATCH_SIZE_BUCKETS) if batch.batch_size <= b), -1)
            counts[index] += executions
            rows += batch.batch_size * executions
        family.add_metric([stats.name, stats.version], cumulative(bounds, counts), rows)
    return family
