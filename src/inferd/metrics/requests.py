"""Latency histograms of each model version: end to end, queue and compute.

Counted on the event loop as requests finish, so plain integers suffice (no locks); a request
costs a dictionary look-up and a bisect per histogram over integer nanosecond bounds.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import HistogramMetricFamily, Metric

from inferd.core.types import Timestamps

LABELS = ["model", "version"]
# Seconds; from sub-millisecond in-process models to multi-second generative ones.
DEFAULT_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

# (name, help) of each latency histogram, in the order `_Histograms` holds them.
HISTOGRAMS = (
    (
        "inferd_request_duration_seconds",
        "Latency of inference requests inside the server (received to sent), in seconds",
    ),
    (
        "inferd_queue_duration_seconds",
        "Time successful requests waited in their model's queue, in seconds",
    ),
    (
        "inferd_compute_duration_seconds",
        "Time the execution serving a successful request took (input, infer, output), in seconds",
    ),
)


def parse_buckets(text: str) -> tuple[float, ...]:
    """Histogram bounds from `--metrics-buckets` (seconds, comma-separated, increasing)."""
    try:
        bounds = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--metrics-buckets: not a list of numbers: '{text}'") from None
    if not bounds:
        raise ValueError("--metrics-buckets: give at least one bound")
    if bounds[0] <= 0 or any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"--metrics-buckets: bounds must be positive and increasing: '{text}'")
    return bounds


def histogram_options(buckets: str, config: Sequence[str]) -> tuple[tuple[float, ...], bool]:
    """(bounds, whether histograms are on) from `--metrics-buckets` and `--metrics-config`."""
    enabled = True
    for item in config:
        key, _, value = item.partition("=")
        if key != "histogram_latencies" or value.lower() not in ("true", "false"):
            raise ValueError(
                f"--metrics-config: '{item}' is not supported (histogram_latencies=true|false)"
            )
        enabled = value.lower() == "true"
    return (parse_buckets(buckets) if buckets else DEFAULT_BUCKETS), enabled


@dataclass(slots=True)
class _Histogram:
    counts: list[int]
    sum_ns: int = 0


_Histograms = tuple[_Histogram, _Histogram, _Histogram]  # request, queue, compute


class RequestMetrics:
    """Histograms with `buckets` (seconds); counts nothing when `histograms` is off."""

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS, histograms: bool = True):
        self._buckets = tuple(buckets)
        self._bounds_ns = [round(b * 1e9) for b in self._buckets]
        self._histograms = histograms
        self._records: dict[tuple[str, str], _Histograms] = {}

    def keep(self, model_name: str, versions: Sequence[str]) -> None:
        """Drop the records of the versions of `model_name` that no longer serve."""
        for key in [k for k in self._records if k[0] == model_name and k[1] not in versions]:
            del self._records[key]

    def _record(self, key: tuple[str, str]) -> _Histograms:
        size = len(self._bounds_ns) + 1
        record = self._records[key] = (
            _Histogram([0] * size),
            _Histogram([0] * size),
            _Histogram([0] * size),
        )
        return record

    def finished(self, model_name: str, model_version: str, t: Timestamps, success: bool) -> None:
        if not self._histograms:
            return
        key = (model_name, model_version)
        request, queue, compute = self._records.get(key) or self._record(key)
        bounds = self._bounds_ns
        ns = t.sent - t.received
        request.counts[bisect.bisect_left(bounds, ns)] += 1
        request.sum_ns += ns
        if success and t.compute_start:  # an ensemble has no queue or compute of its own
            ns = t.compute_start - t.queued
            queue.counts[bisect.bisect_left(bounds, ns)] += 1
            queue.sum_ns += ns
            ns = t.compute_end - t.compute_start
            compute.counts[bisect.bisect_left(bounds, ns)] += 1
            compute.sum_ns += ns

    def families(self) -> Iterator[Metric]:
        """The histograms of every version seen (none when histograms are off)."""
        if not self._histograms:
            return
        bounds = [*(repr(b) for b in self._buckets), "+Inf"]
        records = sorted(self._records.items())
        for index, (name, documentation) in enumerate(HISTOGRAMS):
            family = HistogramMetricFamily(name, documentation, labels=LABELS)
            for (model, version), histograms in records:
                histogram = histograms[index]
                family.add_metric(
                    [model, version], cumulative(bounds, histogram.counts), histogram.sum_ns / 1e9
                )
            yield family


def cumulative(bounds: Sequence[str], counts: Iterable[int]) -> list[tuple[str, float]]:
    """Prometheus buckets (`le` bound, count at or below it) from per-bucket counts."""
    total = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(bounds, counts, strict=True):
        total += count
        buckets.append((bound, total))
    return buckets
