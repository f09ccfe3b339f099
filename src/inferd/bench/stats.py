"""The server-side split of a step's latency, from Triton's statistics extension.

`GET /v2/models/{m}[/versions/{v}]/stats` (or gRPC ModelStatistics) reports cumulative counts
and nanoseconds; a step's figures are the difference between a read before and one after it.
gRPC's JSON form spells 64-bit integers as strings, hence the `int()` everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SECTIONS = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True, slots=True)
class ServerCounters:
    """Cumulative totals, summed over the versions the document lists."""

    inference_count: int
    execution_count: int
    counts: dict[str, int]  # section -> requests counted
    nanoseconds: dict[str, int]  # section -> total time


@dataclass(frozen=True, slots=True)
class ServerSplit:
    """Average microseconds per request spent in each server stage during one step."""

    queue_us: float
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float
    avg_batch: float  # inferences per model execution: how well requests were batched

    @property
    def compute_us(self) -> float:
        return self.compute_input_us + self.compute_infer_us + self.compute_output_us


def read_counters(document: dict[str, Any] | None) -> ServerCounters | None:
    """The totals of a statistics document; None when it is absent or not in Triton's form."""
    if document is None:
        return None
    try:
        entries = document["model_stats"]
        counts = dict.fromkeys(_SECTIONS, 0)
        nanoseconds = dict.fromkeys(_SECTIONS, 0)
        inferences = executions = 0
        for entry in entries:
            inferences += int(entry.get("inference_count", 0))
            executions += int(entry.get("execution_count", 0))
            stats = entry.get("inference_stats", {})
            for section in _SECTIONS:
                counts[section] += int(stats.get(section, {}).get("count", 0))
                nanoseconds[section] += int(stats.get(section, {}).get("ns", 0))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return ServerCounters(inferences, executions, counts, nanoseconds)


def split(before: ServerCounters | None, after: ServerCounters | None) -> ServerSplit | None:
    """Per-request averages over the interval; None if either read is missing or nothing ran."""
    if before is None or after is None:
        return None
    averages = {}
    for section in _SECTIONS:
        count = after.counts[section] - before.counts[section]
        if count <= 0:
            return None
        averages[section] = (after.nanoseconds[section] - before.nanoseconds[section]) / count / 1e3
    executions = after.execution_count - before.execution_count
    inferences = after.inference_count - before.inference_count
    return ServerSplit(
        queue_us=averages["queue"],
        compute_input_us=averages["compute_input"],
        compute_infer_us=averages["compute_infer"],
        compute_output_us=averages["compute_output"],
        avg_batch=inferences / executions if executions > 0 else 0.0,
    )
