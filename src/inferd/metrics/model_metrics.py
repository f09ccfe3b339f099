"""The metrics Python models define themselves (`pb_utils.MetricFamily`), as a Prometheus
collector of their own, registered next to the server's metrics."""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from inferd.backends.python.custom_metrics import STORE, Family, MetricKind

# A counter's samples keep the model's name (no `_total`): `inferd.metrics.exposition` then
# writes `# TYPE NAME counter`, as Triton does.
_TYPES = {
    MetricKind.COUNTER: "counter",
    MetricKind.GAUGE: "gauge",
    MetricKind.HISTOGRAM: "histogram",
}


class ModelMetrics(Collector):
    def collect(self) -> Iterator[Metric]:
        for family in STORE.snapshot():
            if family.series:  # a family without a metric yet has nothing to show
                yield _exported(family)


def _exported(family: Family) -> Metric:
    metric = Metric(family.name, family.description, _TYPES[family.kind])
    for series in family.series.values():
        labels = dict(series.labels)
        if series.buckets is None:
            metric.add_sample(family.name, labels, series.value)
            continue
        cumulative = 0
        for bound, count in zip((*series.buckets, float("inf")), series.counts, strict=True):
            cumulative += count
            le = {"le": "+Inf" if math.isinf(bound) else str(bound)}
            metric.add_sample(f"{family.name}_bucket", labels | le, cumulative)
        metric.add_sample(f"{family.name}_count", labels, series.count)
        metric.add_sample(f"{family.name}_sum", labels, series.value)
    return metric
