"""Statistics aggregation from the engine's observer calls, and the Prometheus view of it."""

from __future__ import annotations

import time

import pytest
from prometheus_client import generate_latest

from inferd.core.errors import NotFound
from inferd.core.statistics import Duration
from inferd.core.types import Timestamps
from inferd.metrics.prometheus import PrometheusMetrics
from inferd.metrics.statistics import Statistics


def request(base: int, queue: int = 10, compute: tuple[int, int, int] = (1, 5, 2)) -> Timestamps:
    """Marks of one request starting at `base`: 3 ns to queue, then queue/compute/send."""
    start = base + 3 + queue
    return Timestamps(
        received=base,
        queued=base + 3,
        compute_start=start,
        compute_input_end=start + compute[0],
        compute_output_start=start + compute[0] + compute[1],
        compute_end=start + sum(compute),
        sent=start + sum(compute) + 4,
    )


def batch(input_ns: int, infer_ns: int, output_ns: int) -> Timestamps:
    return Timestamps(
        compute_start=100,
        compute_input_end=100 + input_ns,
        compute_output_start=100 + input_ns + infer_ns,
        compute_end=100 + input_ns + infer_ns + output_ns,
    )


def test_sums_per_request_durations_and_counts_failures_apart() -> None:
    stats = Statistics()
    stats.model_versions_changed("m", ["1"])
    stats.request_finished("m", "1", request(1000), success=True)
    stats.request_finished("m", "1", request(2000, queue=20, compute=(2, 6, 3)), success=True)
    stats.request_finished("m", "1", Timestamps(received=10, sent=60), success=False)

    (version,) = stats.snapshot("m")
    assert (version.name, version.version) == ("m", "1")
    assert version.success == Duration(2, (3 + 10 + 8 + 4) + (3 + 20 + 11 + 4))
    assert version.fail == Duration(1, 50)
    assert version.queue == Duration(2, 30)
    assert version.compute_input == Duration(2, 3)
    assert version.compute_infer == Duration(2, 11)
    assert version.compute_output == Duration(2, 5)


def test_batches_count_rows_and_executions_per_batch_size() -> None:
    stats = Statistics()
    stats.model_versions_changed("m", ["1"])
    stats.batch_executed("m", "1", 4, batch(1, 10, 2))
    stats.batch_executed("m", "1", 1, batch(1, 3, 1))
    stats.batch_executed("m", "1", 4, batch(2, 20, 4))

    (version,) = stats.snapshot("m", "1")
    assert version.inference_count == 9
    assert version.execution_count == 3
    assert [b.batch_size for b in version.batch_stats] == [1, 4]
    four = version.batch_stats[1]
    assert (four.compute_input, four.compute_infer, four.compute_output) == (
        Duration(2, 3),
        Duration(2, 30),
        Duration(2, 6),
    )


def test_padding_rows_count_in_the_batch_size_not_the_inferences() -> None:
    # A direct sequence batch [empty slot, empty slot, request]: Triton reports batch size 3.
    stats = Statistics()
    stats.model_versions_changed("m", ["1"])
    stats.batch_executed("m", "1", 1, batch(1, 3, 1), "m_0", padding=2)
    stats.batch_executed("m", "1", 3, batch(1, 3, 1), "m_0")

    (version,) = stats.snapshot("m", "1")
    assert (version.inference_count, version.execution_count) == (4, 2)
    assert [(b.batch_size, b.compute_infer.count) for b in version.batch_stats] == [(3, 2)]


def test_last_inference_is_wall_clock_milliseconds() -> None:
    stats = Statistics()
    stats.model_versions_changed("m", ["1"])
    assert stats.snapshot("m")[0].last_inference == 0
    before = time.time_ns() // 1_000_000
    now = time.monotonic_ns()
    stats.request_finished("m", "1", Timestamps(received=now, sent=now), success=True)
    after = time.time_ns() // 1_000_000
    assert before - 1 <= stats.snapshot("m")[0].last_inference <= after + 1


def test_snapshot_is_a_copy() -> None:
    stats = Statistics()
    stats.model_versions_changed("m", ["1"])
    taken = stats.snapshot()
    stats.request_finished("m", "1", request(0), success=True)
    assert taken[0].success == Duration()
    assert stats.snapshot()[0].success.count == 1


def test_unknown_models_and_versions_are_not_found() -> None:
    stats = Statistics()
    stats.model_versions_changed("m", ["1", "2"])
    assert [(s.name, s.version) for s in stats.snapshot()] == [("m", "1"), ("m", "2")]
    with pytest.raises(NotFound):
        stats.snapshot("other")
    with pytest.raises(NotFound):
        stats.snapshot("m", "3")


def test_reload_keeps_counters_of_versions_still_serving_and_drops_the_rest() -> None:
    stats = Statistics()
    stats.model_versions_changed("m", ["1", "2"])
    stats.request_finished("m", "1", request(0), success=True)
    stats.request_finished("m", "2", request(0), success=True)
    stats.model_versions_changed("m", ["2", "3"])
    counts = {s.version: s.success.count for s in stats.snapshot("m")}
    assert counts == {"2": 1, "3": 0}
    # A request that finishes on a version already dropped is not counted anywhere.
    stats.request_finished("m", "1", request(0), success=True)
    stats.model_versions_changed("m", [])
    with pytest.raises(NotFound):
        stats.snapshot("m")


def test_prometheus_exports_triton_names_from_the_statistics() -> None:
    stats = Statistics()
    metrics = PrometheusMetrics(stats, lambda: [("m", "1", 7)])
    stats.model_versions_changed("m", ["1"])
    metrics.model_versions_changed("m", ["1"])
    for observer in (stats, metrics):
        observer.request_finished("m", "1", request(0, queue=2000), success=True)
        observer.request_finished("m", "1", Timestamps(received=0, sent=3000), success=False)
    stats.batch_executed("m", "1", 2, batch(1000, 5000, 1000))

    text = generate_latest(metrics.registry()).decode()
    labels = '{model="m",version="1"}'
    for line in (
        f"nv_inference_request_success{labels} 1.0",
        # Triton's reason label (issue #19): a failure the engine gave no reason for is OTHER.
        'nv_inference_request_failure{model="m",reason="OTHER",version="1"} 1.0',
        'nv_inference_request_failure{model="m",reason="REJECTED",version="1"} 0.0',
        f"nv_inference_count{labels} 2.0",
        f"nv_inference_exec_count{labels} 1.0",
        f"nv_inference_request_duration_us{labels} 5.0",  # (2015 + 3000) ns
        f"nv_inference_queue_duration_us{labels} 2.0",
        f"nv_inference_pending_request_count{labels} 7.0",
        f"inferd_request_duration_seconds_count{labels} 2.0",
        'inferd_request_duration_seconds_bucket{le="0.0005",model="m",version="1"} 2.0',
    ):
        assert line in text.splitlines(), line


def test_a_cancelled_request_is_a_failure_counted_apart_too() -> None:
    stats = Statistics()
    metrics = PrometheusMetrics(stats)
    stats.model_versions_changed("m", ["1"])
    stats.request_finished("m", "1", Timestamps(received=0, sent=10), success=False)
    stats.request_finished("m", "1", Timestamps(received=0, sent=20), False, 0, cancelled=True)

    (version,) = stats.snapshot("m")
    assert version.fail == Duration(2, 30)
    assert version.cancelled == 1
    text = generate_latest(metrics.registry()).decode().splitlines()
    assert 'inferd_inference_request_cancelled{model="m",version="1"} 1.0' in text
    # Triton's reason label (issue #19): one failure CANCELED, the other OTHER.
    assert 'nv_inference_request_failure{model="m",reason="CANCELED",version="1"} 1.0' in text
    assert 'nv_inference_request_failure{model="m",reason="OTHER",version="1"} 1.0' in text
