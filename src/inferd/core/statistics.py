"""Per model version statistics in the shape of the KServe/Triton statistics extension: the
records, and the protocol of what reports them.

`inferd.metrics.statistics.Statistics` counts them as an `Observer`; the engine answers the
frontends' statistics queries from a `StatisticsSource`, so frontends never import metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class Duration:
    """How many times something happened and the nanoseconds it took in total."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


@dataclass(slots=True)
class BatchStatistics:
    """Executions of one batch size (rows over every request of the batch)."""

    batch_size: int
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class VersionStatistics:
    """Everything counted for one model version; durations are per request except batches."""

    name: str
    version: str
    last_inference: int = 0  # milliseconds since the epoch; 0 = never
    inference_count: int = 0  # rows inferred, over all executions
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    cancelled: int = 0  # of the failures, requests cancelled by their client
    # Failures by `FailureReason` value (REJECTED, CANCELED, BACKEND, OTHER); absent: none.
    failure_reasons: dict[str, int] = field(default_factory=dict)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    # Response cache: hits (lookup time), and misses (lookup and insertion time).
    cache_hit: Duration = field(default_factory=Duration)
    cache_miss: Duration = field(default_factory=Duration)
    batch_stats: list[BatchStatistics] = field(default_factory=list)


class StatisticsSource(Protocol):
    def snapshot(self, name: str = "", version: str = "") -> list[VersionStatistics]:
        """Copies of the statistics of every serving version, of one model, or of one version.

        Raises `NotFound` for a model (or version) that is not serving.
        """
