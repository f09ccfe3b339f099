from __future__ import annotations

from typing import Any

import pytest

from inferd.bench.stats import read_counters, split


def document(requests: int, executions: int, queue_ns: int, infer_ns: int) -> dict[str, Any]:
    section = {"count": requests, "ns": 0}
    # gRPC's JSON spells 64-bit integers as strings: both forms must read the same.
    return {
        "model_stats": [
            {
                "inference_count": str(requests),
                "execution_count": executions,
                "inference_stats": {
                    "queue": {"count": str(requests), "ns": str(queue_ns)},
                    "compute_input": section,
                    "compute_infer": {"count": requests, "ns": infer_ns},
                    "compute_output": section,
                },
            }
        ]
    }


def test_split_is_the_per_request_average_between_two_reads() -> None:
    before = read_counters(document(10, 10, 1_000_000, 2_000_000))
    after = read_counters(document(30, 15, 5_000_000, 8_000_000))
    result = split(before, after)
    assert result is not None
    assert result.queue_us == pytest.approx(200.0)  # 4 ms over 20 requests
    assert result.compute_infer_us == pytest.approx(300.0)
    assert result.compute_us == pytest.approx(300.0)
    assert result.avg_batch == pytest.approx(4.0)  # 20 inferences in 5 executions


def test_missing_or_foreign_statistics_give_no_split() -> None:
    assert read_counters(None) is None
    assert read_counters({"error": "not found"}) is None
    same = read_counters(document(3, 3, 1, 1))
    assert split(same, same) is None  # nothing ran in between
    assert split(None, same) is None
