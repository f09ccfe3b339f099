"""/metrics' formats: Triton-style counters (samples named as the family) in text and
OpenMetrics, next to prometheus-client's own metrics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.registry import Collector

from inferd.metrics.exposition import render

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


class _Families(Collector):
    def __init__(self, *families: Metric) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _bare() -> Metric:
    family = Metric("latency_ns", "Cumulative latency", "counter")
    family.add_sample("latency_ns", {"model": "m", "version": "1"}, 42)
    return family


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)  # as the server's
    registry.register(_Families(_bare()))
    Counter("own_requests", "A prometheus-client counter", registry=registry).inc(3)
    return registry


def test_text_writes_bare_counters_as_triton_and_client_counters_unchanged() -> None:
    body, content_type = render(_registry(), "*/*", None)
    lines = body.decode().splitlines()
    assert content_type.startswith("text/plain")
    assert lines[:3] == [
        "# HELP latency_ns Cumulative latency",
        "# TYPE latency_ns counter",
        'latency_ns{model="m",version="1"} 42.0',
    ]
    assert "# TYPE own_requests_total counter" in lines
    assert "own_requests_total 3.0" in lines


def test_openmetrics_keeps_bare_counters_valid_as_unknown() -> None:
    body, content_type = render(_registry(), OPENMETRICS, None)
    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in om_families(body.decode())}  # the strict parser accepts it
    assert families["latency_ns"].type == "unknown"
    assert families["latency_ns"].samples[0].value == 42
    assert families["own_requests"].type == "counter"


def test_an_empty_client_counter_keeps_its_total_name() -> None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Families(CounterMetricFamily("executions", "Executions")))
    assert "# TYPE executions_total counter" in render(registry, "", None)[0].decode()


def test_name_filter_selects_families() -> None:
    body, _ = render(_registry(), "", ["latency_ns"])
    assert "own_requests" not in body.decode()
    assert "# TYPE latency_ns counter" in body.decode()
