"""Latency histograms of each model version: end to end, queue, compute, and Triton's
request to first response (a decoupled model's first of its stream).

Counted on the event loop as requests finish, so plain integers suffice (no locks); a request
costs a dictionary look-up and a bisect per histogram over integer nanosecond bounds.

A model's config may set a histogram's buckets (`model_metrics`, Triton's field, by family
name: the first response's in milliseconds, inferd's in seconds); they apply from the first
request of a version, so a change takes effect once the version is unloaded and loaded again
(as in Triton).
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import HistogramMetricFamily, Metric

from inferd.core.model_config import ModelConfig
from inferd.core.types import Timestamps
from inferd.metrics.options import DEFAULT_BUCKETS

logger = logging.getLogger(__name__)

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


# (name, help, unit in nanoseconds) of each histogram, in the order `_Histograms` holds them.
FAMILIES = (*((name, doc, 1e9) for name, doc in HISTOGRAMS), (*FIRST_RESPONSE, 1e6))
_CUSTOMIZABLE = tuple(name for name, _, _ in FAMILIES)
# A version's own buckets by family name (its config's `model_metrics`).
BucketsOf = Callable[[str, str], Mapping[str, Sequence[float]]]


@dataclass(slots=True)
class _Histogram:
    buckets: tuple[float, ...]  # in the family's unit
    unit_ns: float
    bounds_ns: list[int] = field(init=False)
    counts: list[int] = field(init=False)
    sum_ns: int = 0

    def __post_init__(self) -> None:
        self.bounds_ns = [round(b * self.unit_ns) for b in self.buckets]
        self.counts = [0] * (len(self.buckets) + 1)

    def add(self, ns: int) -> None:
        self.counts[bisect.bisect_left(self.bounds_ns, ns)] += 1
        self.sum_ns += ns


# request, queue, compute, first response
_Histograms = tuple[_Histogram, _Histogram, _Histogram, _Histogram]


class RequestMetrics:
    """Histograms with `buckets` (seconds) unless a version's config sets its own (`buckets_of`,
    asked as versions load); counts nothing when `histograms` is off."""

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS, histograms: bool = True):
        self._defaults = (*(tuple(buckets),) * len(HISTOGRAMS), FIRST_RESPONSE_BUCKETS_MS)
        self._histograms = histograms
        self._records: dict[tuple[str, str], _Histograms] = {}
        self._buckets_of: BucketsOf | None = None
        self._own: dict[tuple[str, str], Mapping[str, Sequence[float]]] = {}

    def watch_buckets(self, buckets_of: BucketsOf) -> None:
        """Set where a version's own buckets come from."""
        self._buckets_of = buckets_of

    def keep(self, model_name: str, versions: Sequence[str]) -> None:
        """Drop the records of the versions of `model_name` that no longer serve, and of those
        (re)loaded with other buckets of their own."""
        for key in [k for k in self._own if k[0] == model_name and k[1] not in versions]:
            del self._own[key]
        for key in [k for k in self._records if k[0] == model_name and k[1] not in versions]:
            del self._records[key]
        if self._buckets_of is None:
            return
        for version in versions:
            key = (model_name, version)
            own = self._buckets_of(model_name, version)
            if own != self._own.get(key, {}):
                self._own[key] = own
                self._records.pop(key, None)

    def _record(self, key: tuple[str, str]) -> _Histograms:
        own = self._own.get(key, {})
        request, queue, compute, first = (
            _Histogram(tuple(own.get(name, default)), unit_ns)
            for (name, _, unit_ns), default in zip(FAMILIES, self._defaults, strict=True)
        )
        record = self._records[key] = (request, queue, compute, first)
        return record

    def finished(self, model_name: str, model_version: str, t: Timestamps, success: bool) -> None:
        if not self._histograms:
            return
        key = (model_name, model_version)
        request, queue, compute, first = self._records.get(key) or self._record(key)
        ns = t.sent - t.received
        request.add(ns)
        # A unary request's one response is its first; a failed one sent none.
        first_ns = t.first_response - t.received if t.first_response else ns if success else -1
        if first_ns >= 0:
            first.add(first_ns)
        if success and t.compute_start:  # an ensemble has no queue or compute of its own
            queue.add(t.compute_start - t.queued)
            compute.add(t.compute_end - t.compute_start)

    def families(self) -> Iterator[Metric]:
        """The histograms of every version seen (none when histograms are off)."""
        if not self._histograms:
            return
        records = sorted(self._records.items())
        for index, (name, documentation, unit_ns) in enumerate(FAMILIES):
            family = HistogramMetricFamily(name, documentation, labels=LABELS)
            for (model, version), histograms in records:
                histogram = histograms[index]
                bounds = [*(_bound(b, unit_ns) for b in histogram.buckets), "+Inf"]
                family.add_metric(
                    [model, version],
                    cumulative(bounds, histogram.counts),
                    histogram.sum_ns / unit_ns,
                )
            yield family


def _bound(bucket: float, unit_ns: float) -> str:
    """A bucket's `le` label: seconds as Python writes them, milliseconds as Triton does."""
    return repr(bucket) if unit_ns == 1e9 else f"{bucket:g}"


def cumulative(bounds: Sequence[str], counts: Iterable[int]) -> list[tuple[str, float]]:
    """Prometheus buckets (`le` bound, count at or below it) from per-bucket counts."""
    total = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(bounds, counts, strict=True):
        total += count
        buckets.append((bound, total))
    return buckets


def config_buckets(model_name: str, config: ModelConfig) -> dict[str, tuple[float, ...]]:
    """The buckets a model's config sets (`model_metrics`), by family; a family without its
    own histogram here, or buckets not strictly increasing, are logged and left out."""
    own: dict[str, tuple[float, ...]] = {}
    for control in config.model_metrics.metric_control:
        family = control.metric_identifier.family
        buckets = tuple(control.histogram_options.buckets)
        if family not in _CUSTOMIZABLE:
            logger.warning(
                "model '%s': metric family '%s' in model_metrics has no buckets to set "
                "(those that have: %s)",
                model_name,
                family,
                ", ".join(_CUSTOMIZABLE),
            )
        elif not buckets or any(a >= b for a, b in itertools.pairwise(buckets)):
            logger.warning(
                "model '%s': the buckets of '%s' in model_metrics must be a strictly "
                "increasing list, not %s; its default buckets apply",
                model_name,
                family,
                list(buckets),
            )
        else:
            own[family] = buckets
    return own
