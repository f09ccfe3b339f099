"""The Grafana dashboard queries only metrics inferd exports, so it cannot drift from them:
every metric name in its PromQL is a sample name of a scrape of a server that has served a
request, run a batch and loaded a model (GPU names from the NVML collector's readings)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferd.core.observer import FailureReason
from inferd.core.types import Timestamps
from inferd.metrics.gpu import READINGS
from inferd.metrics.prometheus import PrometheusMetrics
from inferd.metrics.statistics import Statistics
from inferd.metrics.system import SystemMetrics

DASHBOARD = Path(__file__).parents[3] / "deploy" / "grafana" / "inferd.json"
# A metric name: what PromQL has before `{`, `[` or `)` and is not a function, an aggregation
# or a label (labels appear after `by (`, which the pattern skips by needing a known prefix).
_NAME = re.compile(r"\b((?:nv|inferd|process)_[a-z_]+)\b")


def exported_names() -> set[str]:
    stats = Statistics()
    metrics = PrometheusMetrics(stats, lambda: [("m", "1", 0)])
    metrics.watch_pending(lambda: [("m", "1", 0)], lambda: [("m", "1", 0)])
    compute = Timestamps(1, 2, 3, 4, 5, 6, 7)
    for observer in (stats, metrics):
        observer.model_versions_changed("m", ["1"])
        observer.request_finished("m", "1", compute, True)
        observer.request_finished("m", "1", compute, False, failure=FailureReason.BACKEND)
        observer.batch_executed("m", "1", 1, compute, "m_0_0")
    metrics.version_load_finished("m", "1", 0.1, False)
    registry = metrics.registry()
    registry.register(SystemMetrics())
    ProcessCollector(registry=registry)
    text = generate_latest(registry).decode()
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    return names | {name for name, _, _ in READINGS}


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    found += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return found


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    exported = exported_names()
    used = {name for query in queries() for name in _NAME.findall(query)}
    assert used, "the dashboard queries no metric"
    assert used <= exported, sorted(used - exported)


def test_the_dashboard_covers_the_issues_panels() -> None:
    text = " ".join(queries())
    for name in (
        "nv_inference_request_success",  # throughput
        "inferd_request_duration_seconds_bucket",  # p50 / p99
        "inferd_queue_duration_seconds_bucket",  # queue vs compute
        "inferd_compute_duration_seconds_bucket",
        "inferd_batch_size_bucket",
        "nv_inference_request_failure",  # errors by reason
        "inferd_process_cpu_utilization",
        "nv_gpu_utilization",
    ):
        assert name in text, name
    assert "by (model, reason)" in text
