"""`--log-verbose` request tracing: one log line per request with its timestamps.

The verbose level can change at run time (the logging extension sets `verbose_level`); at 0
a request costs one attribute check here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from inferd.core.observer import FailureReason
from inferd.core.types import Timestamps

logger = logging.getLogger("inferd.trace")


def _delta_us(start: int, end: int) -> str:
    return f"{(end - start) / 1000:.1f}" if start and end else "-"


class TraceLog:
    """An `Observer` logging received, queued, compute and sent marks as microsecond deltas,
    while `verbose_level` is 1 or more."""

    def __init__(self, verbose_level: int = 1) -> None:
        self.verbose_level = verbose_level

    def set_verbose_level(self, level: int) -> None:
        self.verbose_level = level

    def model_versions_changed(self, model_name: str, versions: Sequence[str]) -> None:
        if not self.verbose_level:
            return
        logger.info("model '%s' serving versions [%s]", model_name, ", ".join(versions))

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
        if not self.verbose_level:
            return
        t = timestamps
        logger.info(
            "request model=%s version=%s %s total_us=%s received->queued=%s queue=%s "
            "compute_input=%s compute_infer=%s compute_output=%s compute_end->sent=%s",
            model_name,
            model_version,
            "ok" if success else "cancelled" if cancelled else "failed",
            _delta_us(t.received, t.sent),
            _delta_us(t.received, t.queued),
            _delta_us(t.queued, t.compute_start),
            _delta_us(t.compute_start, t.compute_input_end),
            _delta_us(t.compute_input_end, t.compute_output_start),
            _delta_us(t.compute_output_start, t.compute_end),
            _delta_us(t.compute_end, t.sent),
        )

    def batch_executed(
        self,
        model_name: str,
        model_version: str,
        batch_size: int,
        compute: Timestamps,
        instance: str = "",
        padding: int = 0,
    ) -> None:
        if not self.verbose_level:
            return
        logger.info(
            "batch model=%s version=%s rows=%d compute_us=%s",
            model_name,
            model_version,
            batch_size,
            _delta_us(compute.compute_start, compute.compute_end),
        )

    def version_load_finished(
        self, model_name: str, model_version: str, seconds: float, loaded: bool
    ) -> None:
        if not self.verbose_level:
            return
        logger.info(
            "load model=%s version=%s %s seconds=%.3f",
            model_name,
            model_version,
            "ok" if loaded else "failed",
            seconds,
        )
