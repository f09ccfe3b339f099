"""Latency histograms of each model version: end to end, queue, compute, and Triton's
request to first response (a decoupled model's first of its stream).

Counted on the event loop as requests finish, so plain integers suffice (no locks); a request
costs a dictionary look-up and a bisect per histogram over integer nanosecond bounds.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import HistogramMetricFamily, Metric

from inferd.core.types import Timestamps
from inferd.metrics.options import DEFAULT_BUCKETS

LABELS = ["model", "version"]
# Triton's, in milliseconds.
FIRST_RESPONSE_BUCKETS_MS = (100.0, 500.0, 2000.0, 5000.0)

# (name, help) of each latency histogram in seconds, in the order `_Histograms` holds them.
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
FIRST_RESPONSE = (
    "nv_inference_first_response_histogram_ms",
    "Duration from request to first response in milliseconds",
)


@dataclass(slots=True)
class _Histogram:
    counts: list[int]
    sum_ns: int = 0


# request, queue, compute, first response
_Histograms = tuple[_Histogram, _Histogram, _Histogram, _Histogram]


class RequestMetrics:
    """Histograms with `buckets` (seconds); counts nothing when `histograms` is off."""

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS, histograms: bool = True):
        self._buckets = tuple(buckets)
        self._bounds_ns = [round(b * 1e9) for b in self._buckets]
        self._first_bounds_ns = [round(b * 1e6) for b in FIRST_RESPONSE_BUCKETS_MS]
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
            _Histogram([0] * (len(self._first_bounds_ns) + 1)),
        )
        return record

    def finished(self, model_name: str, model_version: str, t: Timestamps, success: bool) -> None:
        if not self._histograms:
            return
        key = (model_name, model_version)
        request, queue, compute, first = self._records.get(key) or self._record(key)
        bounds = self._bounds_ns
        ns = t.sent - t.received
        request.counts[bisect.bisect_left(bounds, ns)] += 1
        request.sum_ns += ns
        # A unary request's one response is its first; a failed one sent none.
        first_ns = t.first_response - t.received if t.first_response else ns if success else -1
        if first_ns >= 0:
            first.counts[bisect.bisect_left(self._first_bounds_ns, first_ns)] += 1
            first.sum_ns += first_ns
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
        family = HistogramMetricFamily(*FIRST_RESPONSE, labels=LABELS)
        bounds = [*(f"{b:g}" for b in FIRST_RESPONSE_BUCKETS_MS), "+Inf"]
        for (model, version), histograms in records:
            first = histograms[3]
            family.add_metric(
                [model, version], cumulative(bounds, first.counts), first.sum_ns / 1e6
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
