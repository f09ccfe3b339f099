"""Per model version statistics (the records of `inferd.core.statistics`), counted.

Fed by the engine as an `Observer` on the event loop, so plain counters suffice (no locks).
Counters live while a version serves: a reload that keeps a version keeps its counters,
and a version that stops serving is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from inferd.core.errors import NotFound, unknown_model
from inferd.core.observer import FailureReason
from inferd.core.statistics import BatchStatistics, VersionStatistics
from inferd.core.types import Timestamps


@dataclass(slots=True)
class _Counters:
    stats: VersionStatistics
    last_monotonic_ns: int = 0
    batches: dict[int, BatchStatistics] = field(default_factory=dict)


class Statistics:
    """An `Observer` that aggregates what `snapshot` reports (a `StatisticsSource`)."""

    def __init__(self) -> None:
        self._models: dict[str, dict[str, _Counters]] = {}
        # Requests carry monotonic marks; the protocol wants wall-clock milliseconds.
        self._epoch_offset_ns = time.time_ns() - time.monotonic_ns()

    # ---- Observer ----------------------------------------------------------------------------

    def model_versions_changed(self, model_name: str, versions: Sequence[str]) -> None:
        old = self._models.pop(model_name, {})
        if versions:
            self._models[model_name] = {
                v: old.get(v) or _Counters(VersionStatistics(model_name, v)) for v in versions
            }

    def request_finished(
        self,
        model_name: str,
        model_version: str,
        timestamps: Timestamps,
        success: bool,
        inferred_rows: int = 0,
        cancelled: bool = False,
        failure: FailureReason | None = None,
    ) -> None:
        counters = self._models.get(model_name, {}).get(model_version)
        if counters is None:
            return  # a request that finished on a version already dropped
        stats = counters.stats
        counters.last_monotonic_ns = timestamps.sent
        if not success:
            stats.fail.add(timestamps.sent - timestamps.received)
            stats.cancelled += cancelled
            reason = "CANCELED" if cancelled else failure.value if failure else "OTHER"
            stats.failure_reasons[reason] = stats.failure_reasons.get(reason, 0) + 1
            return
        stats.success.add(timestamps.sent - timestamps.received)
        if timestamps.cache_hit_ns:  # as Triton: no queue wait, no compute, no inference
            stats.cache_hit.add(timestamps.cache_hit_ns)
            stats.queue.add(0)
            return
        if timestamps.cache_miss_ns:
            stats.cache_miss.add(timestamps.cache_miss_ns)
        stats.inference_count += inferred_rows
        stats.queue.add(timestamps.compute_start - timestamps.queued)
        stats.compute_input.add(timestamps.compute_input_end - timestamps.compute_start)
        stats.compute_infer.add(timestamps.compute_output_start - timestamps.compute_input_end)
        stats.compute_output.add(timestamps.compute_end - timestamps.compute_output_start)

    def batch_executed(
        self,
        model_name: str,
        model_version: str,
        batch_size: int,
        compute: Timestamps,
        instance: str = "",
        padding: int = 0,
    ) -> None:
        counters = self._models.get(model_name, {}).get(model_version)
        if counters is None:
            return
        counters.stats.inference_count += batch_size
        counters.stats.execution_count += 1
        executed = batch_size + padding
        batch = counters.batches.get(executed)
        if batch is None:
            batch = counters.batches[executed] = BatchStatistics(executed)
        batch.compute_input.add(compute.compute_input_end - compute.compute_start)
        batch.compute_infer.add(compute.compute_output_start - compute.compute_input_end)
        batch.compute_output.add(compute.compute_end - compute.compute_output_start)

    def version_load_finished(
        self, model_name: str, model_version: str, seconds: float, loaded: bool
    ) -> None:
        """Not part of the statistics extension."""

    # ---- queries -----------------------------------------------------------------------------

    def snapshot(self, name: str = "", version: str = "") -> list[VersionStatistics]:
        """Copies of the statistics of every serving version, of one model, or of one version.

        Raises `NotFound` for a model (or version) that is not serving.
        """
        if not name:
            selected = [c for versions in self._models.values() for c in versions.values()]
        else:
            versions = self._models.get(name)
            if versions is None:
                raise NotFound(unknown_model(name))
            if version and version not in versions:
                raise NotFound(unknown_model(name, version))
            selected = [versions[version]] if version else list(versions.values())
        return [self._copy(c) for c in sorted(selected, key=_order)]

    def _copy(self, counters: _Counters) -> VersionStatistics:
        stats = counters.stats
        last = counters.last_monotonic_ns
        return replace(
            stats,
            last_inference=(last + self._epoch_offset_ns) // 1_000_000 if last else 0,
            failure_reasons=dict(stats.failure_reasons),
            success=replace(stats.success),
            fail=replace(stats.fail),
            queue=replace(stats.queue),
            compute_input=replace(stats.compute_input),
            compute_infer=replace(stats.compute_infer),
            compute_output=replace(stats.compute_output),
            cache_hit=replace(stats.cache_hit),
            cache_miss=replace(stats.cache_miss),
            batch_stats=[
                BatchStatistics(
                    b.batch_size,
                    replace(b.compute_input),
                    replace(b.compute_infer),
                    replace(b.compute_output),
                )
                for _, b in sorted(counters.batches.items())
            ],
        )


def _order(counters: _Counters) -> tuple[str, int, str]:
    version = counters.stats.version
    return counters.stats.name, int(version) if version.isdigit() else -1, version
