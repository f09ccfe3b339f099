"""Triton's latency summaries: quantiles over a sliding window, computed when scraped.

prometheus-client's summaries have no quantiles, and a streaming estimator (Triton's CKMS)
costs far more per observation in Python than an append. So a request appends its durations
(nanoseconds, 8 bytes each: request, queue, compute input, infer and output, cache hit or
miss) to the arrays of the current age bucket, and a scrape sorts what the window holds. As
in Triton (prometheus-cpp), the window is 60 s in 5 age buckets, and `_count` and `_sum`
cover the server's life: they are read from the statistics, which count the same successful
requests. As in Triton, a version using the response cache has no request summary (a hit's
duration would mislead it) and has the cache summaries from its load.

A bucket keeps at most `KEPT` requests: past that it keeps every other one, then every
fourth, ... (an even sample over the bucket's time). So memory and a scrape's sort stay
bounded at any rate (a busy version's scrape sorts 5 x 20480 values per summary, a few ms), and a
quantile's rank stays within Triton's errors (from 20480 samples the 0.999 quantile's rank has
a standard error of about 0.0002, against Triton's 0.001).
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
from prometheus_client.metrics_core import Metric

from inferd.core.statistics import Duration, VersionStatistics
from inferd.core.types import Timestamps

WINDOW_NS = 60_000_000_000
AGE_BUCKETS = 5
_BUCKET_NS = WINDOW_NS // AGE_BUCKETS
KEPT = 4096

# (name, help, the statistics' duration each one's count and sum come from), in the order
# a bucket holds their arrays.
SUMMARIES: tuple[tuple[str, str, str], ...] = (
    (
        "nv_inference_request_summary_us",
        "Summary of inference request duration in microseconds (successful requests)",
        "success",
    ),
    (
        "nv_inference_queue_summary_us",
        "Summary of inference queuing duration in microseconds",
        "queue",
    ),
    (
        "nv_inference_compute_input_summary_us",
        "Summary of compute input duration in microseconds",
        "compute_input",
    ),
    (
        "nv_inference_compute_infer_summary_us",
        "Summary of compute inference duration in microseconds",
        "compute_infer",
    ),
    (
        "nv_inference_compute_output_summary_us",
        "Summary of compute output duration in microseconds",
        "compute_output",
    ),
    # Only for versions whose requests met the response cache.
    (
        "nv_cache_hit_summary_per_model",
        "Summary of cache hit durations per model, in microseconds",
        "cache_hit",
    ),
    (
        "nv_cache_miss_summary_per_model",
        "Summary of cache miss (lookup and insertion) durations per model, in microseconds",
        "cache_miss",
    ),
)
_CACHE = ("cache_hit", "cache_miss")

# A string: `array` is subscriptable at run time only from Python 3.12.
_Arrays: TypeAlias = "tuple[array[int], ...]"


def _arrays() -> _Arrays:
    return tuple(array("q") for _ in SUMMARIES)


@dataclass(slots=True)
class _Window:
    """The age buckets of one model version: (start ns, arrays), oldest first."""

    ends: int  # when the current (last) bucket ends
    buckets: deque[tuple[int, _Arrays]] = field(default_factory=deque)
    seen: int = 0  # requests of the current bucket
    mask: int = 0  # keep the requests whose `seen` has none of these bits: stride - 1

    def rotate(self, now: int) -> None:
        self.buckets.append((now, _arrays()))
        self.ends = now + _BUCKET_NS
        self.seen = self.mask = 0
        while self.buckets[0][0] <= now - WINDOW_NS:
            self.buckets.popleft()

    def thin(self) -> None:
        """Keep every other request of the current bucket, and from now on half as many."""
        for values in self.buckets[-1][1]:
            del values[1::2]
        self.mask = self.mask * 2 + 1


class LatencySummaries:
    """Durations of successful requests per model version, kept for the window."""

    def __init__(self, quantiles: Sequence[tuple[float, float]]) -> None:
        self._quantiles = [q for q, _ in quantiles]
        self._labels = [repr(q) for q in self._quantiles]
        self._windows: dict[tuple[str, str], _Window] = {}

    def keep(self, model_name: str, versions: Sequence[str]) -> None:
        """Drop the windows of the versions of `model_name` that no longer serve."""
        for key in [k for k in self._windows if k[0] == model_name and k[1] not in versions]:
            del self._windows[key]

    def observe(self, model_name: str, model_version: str, t: Timestamps) -> None:
        """One successful request's durations (an ensemble's: only its request duration; a
        cache hit's: its request duration and no queueing)."""
        window = self._windows.get((model_name, model_version))
        if window is None:
            window = self._windows[model_name, model_version] = _Window(0)
        if t.sent >= window.ends:
            window.rotate(t.sent)
        seen = window.seen
        window.seen = seen + 1
        if seen & window.mask:
            return
        request, queue, compute_input, compute_infer, compute_output, hit, miss = window.buckets[
            -1
        ][1]
        request.append(t.sent - t.received)
        if t.cache_hit_ns:  # as the statistics count it (and Triton): no wait, no compute
            queue.append(0)
            hit.append(t.cache_hit_ns)
        elif t.compute_start:  # an ensemble has no queue or compute of its own
            queue.append(t.compute_start - t.queued)
            compute_input.append(t.compute_input_end - t.compute_start)
            compute_infer.append(t.compute_output_start - t.compute_input_end)
            compute_output.append(t.compute_end - t.compute_output_start)
            if t.cache_miss_ns:
                miss.append(t.cache_miss_ns)
        if len(request) >= KEPT:
            window.thin()

    def families(
        self,
        snapshot: Sequence[VersionStatistics],
        now: int,
        cached: Collection[tuple[str, str]] = (),
    ) -> Iterator[Metric]:
        """The summaries of every serving version, quantiles over the window ending `now`
        (NaN where it holds no observation, as in Triton). As in Triton, a version using the
        response cache (`cached`: (model, version)) has the cache summaries and no request
        summary; another has cache summaries only once it met the cache."""
        windows = self._windows
        for index, (name, documentation, duration) in enumerate(SUMMARIES):
            family = Metric(name, documentation, "summary")
            for stats in snapshot:
                total: Duration = getattr(stats, duration)
                uses_cache = (stats.name, stats.version) in cached
                if duration == "success" and uses_cache:
                    continue
                if duration in _CACHE and not total.count and not uses_cache:
                    continue
                labels = {"model": stats.name, "version": stats.version}
                window = windows.get((stats.name, stats.version))
                values = self._quantile_values(window, index, now)
                for label, value in zip(self._labels, values, strict=True):
                    family.add_sample(name, labels | {"quantile": label}, value)
                family.add_sample(f"{name}_count", labels, total.count)
                family.add_sample(f"{name}_sum", labels, total.ns / 1000)
            yield family

    def _quantile_values(self, window: _Window | None, index: int, now: int) -> list[float]:
        arrays = [
            np.frombuffer(bucket[index], dtype=np.int64)
            for start, bucket in (window.buckets if window else ())
            if start > now - WINDOW_NS and bucket[index]
        ]
        if not arrays:
            return [float("nan")] * len(self._quantiles)
        values = np.concatenate(arrays)
        # An observed value at each rank (no interpolation), in microseconds.
        found = np.quantile(values, self._quantiles, method="inverted_cdf")
        return [float(v) / 1000 for v in found]
