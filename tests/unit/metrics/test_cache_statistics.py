"""Response cache hits and misses in the statistics and on /metrics, counted as Triton does:
a hit is a success without queue wait, compute or inference; a miss is an ordinary request
that also spent its lookup and insertion time."""

from __future__ import annotations

from prometheus_client import generate_latest

from inferd.core.statistics import Duration
from inferd.core.types import Timestamps
from inferd.metrics.prometheus import PrometheusMetrics
from inferd.metrics.statistics import Statistics
from tests.unit.metrics.test_statistics import request


def test_hits_and_misses_are_counted_as_triton_counts_them() -> None:
    stats = Statistics()
    stats.model_versions_changed("m", ["1"])
    miss = request(0)
    miss.cache_miss_ns = 3000
    stats.request_finished("m", "1", miss, success=True)
    for _ in range(2):
        hit = Timestamps(received=0, sent=4000, cache_hit_ns=1000)
        stats.request_finished("m", "1", hit, success=True, inferred_rows=5)  # an ensemble's
    failed = Timestamps(received=0, sent=100, cache_miss_ns=0)
    stats.request_finished("m", "1", failed, success=False)
    (snapshot,) = stats.snapshot("m")
    assert (snapshot.cache_hit, snapshot.cache_miss) == (Duration(2, 2000), Duration(1, 3000))
    assert snapshot.success.count == 3 and snapshot.fail.count == 1
    assert snapshot.queue == Duration(3, 10)  # a hit waits in no queue
    assert snapshot.compute_infer == Duration(1, 5)  # nor runs
    assert snapshot.inference_count == 0


def test_the_cache_counters_have_tritons_names_on_metrics() -> None:
    stats = Statistics()
    metrics = PrometheusMetrics(stats)
    stats.model_versions_changed("m", ["1"])
    stats.request_finished("m", "1", Timestamps(sent=9000, cache_hit_ns=4000), success=True)
    missed = request(0)
    missed.cache_miss_ns = 7000
    stats.request_finished("m", "1", missed, success=True)
    lines = generate_latest(metrics.registry()).decode().splitlines()
    labels = '{model="m",version="1"}'
    for line in (
        f"nv_cache_num_hits_per_model{labels} 1.0",
        f"nv_cache_num_misses_per_model{labels} 1.0",
        f"nv_cache_hit_duration_per_model{labels} 4.0",
        f"nv_cache_miss_duration_per_model{labels} 7.0",
    ):
        assert line in lines, line
