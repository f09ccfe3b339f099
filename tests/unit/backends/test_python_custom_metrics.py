"""Custom metrics of Python models (`pb_utils.MetricFamily`) and their export."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from inferd.backends.python.custom_metrics import (
    STORE,
    MetricFamily,
    MetricKind,
    MetricUpdate,
    apply_from_worker,
)
from inferd.backends.python.triton_errors import TritonModelException
from inferd.metrics.exposition import render
from inferd.metrics.model_metrics import ModelMetrics


def _exported() -> list[str]:
    registry = CollectorRegistry()
    registry.register(ModelMetrics())
    return render(registry, "", None)[0].decode().splitlines()


def test_counter_gauge_and_histogram_values_and_export() -> None:
    counter = MetricFamily("unit_hits", "Hits", MetricFamily.COUNTER).Metric(labels={"m": "a"})
    same = MetricFamily("unit_hits", "Hits", MetricFamily.COUNTER).Metric(labels={"m": "a"})
    gauge = MetricFamily("unit_level", "Level", MetricFamily.GAUGE).Metric()
    histogram = MetricFamily("unit_sizes", "Sizes", MetricFamily.HISTOGRAM).Metric(buckets=[10, 1])
    counter.increment(2)
    same.increment(3)
    gauge.set(7)
    gauge.increment(-2)
    for value in (0.5, 5, 50):
        histogram.observe(value)
    assert counter.value() == same.value() == 5.0
    assert gauge.value() == 5.0
    lines = _exported()
    assert "# HELP unit_hits Hits" in lines
    assert "# TYPE unit_hits counter" in lines
    assert 'unit_hits{m="a"} 5.0' in lines
    assert "unit_level 5.0" in lines
    assert 'unit_sizes_bucket{le="1.0"} 1.0' in lines
    assert 'unit_sizes_bucket{le="10.0"} 2.0' in lines
    assert 'unit_sizes_bucket{le="+Inf"} 3.0' in lines
    assert "unit_sizes_sum 55.5" in lines


def test_misuse_is_refused_with_a_model_exception() -> None:
    counter = MetricFamily("unit_refused", "R", MetricFamily.COUNTER).Metric()
    with pytest.raises(TritonModelException, match="cannot be decremented"):
        counter.increment(-1)
    with pytest.raises(TritonModelException, match="GAUGE"):
        counter.set(1)
    with pytest.raises(TritonModelException, match="exists with kind COUNTER"):
        MetricFamily("unit_refused", "R", MetricFamily.GAUGE)
    with pytest.raises(TritonModelException, match="needs its buckets"):
        MetricFamily("unit_histogram", "H", MetricFamily.HISTOGRAM).Metric()
    with pytest.raises(TritonModelException, match="not a valid metric name"):
        MetricFamily("9 lives", "N", MetricFamily.GAUGE)


def test_a_workers_change_of_a_clashing_family_is_dropped_not_raised() -> None:
    MetricFamily("unit_clash", "C", MetricFamily.COUNTER)
    apply_from_worker(MetricUpdate("unit_clash", "C", MetricKind.GAUGE, (), None, "set", 1.0))
    assert not any(f.series for f in STORE.snapshot() if f.name == "unit_clash")
