"""The HTTP side of the statistics extension: its routes' target and its JSON document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inferd.core.errors import NotFound
from inferd.core.statistics import Duration, VersionStatistics


def statistics_target(rest: list[str]) -> tuple[str, str]:
    """(model, version) from the path between /v2/models and /stats ("" = all)."""
    if not rest:
        return "", ""
    if len(rest) == 1:
        return rest[0], ""
    if len(rest) == 3 and rest[1] == "versions":
        return rest[0], rest[2]
    raise NotFound(f"no statistics route for /v2/models/{'/'.join(rest)}/stats")


def statistics_document(stats: Sequence[VersionStatistics]) -> dict[str, Any]:
    """The statistics extension's JSON (`{"model_stats": [...]}`), which is also the proto3
    JSON form of gRPC's `ModelStatisticsResponse`, so both frontends report the same numbers."""
    return {"model_stats": [_version_document(s) for s in stats]}


def _version_document(stats: VersionStatistics) -> dict[str, Any]:
    return {
        "name": stats.name,
        "version": stats.version,
        "last_inference": stats.last_inference,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": _duration(stats.success),
            "fail": _duration(stats.fail),
            "queue": _duration(stats.queue),
            "compute_input": _duration(stats.compute_input),
            "compute_infer": _duration(stats.compute_infer),
            "compute_output": _duration(stats.compute_output),
            "cache_hit": _duration(stats.cache_hit),
            "cache_miss": _duration(stats.cache_miss),
        },
        "batch_stats": [
            {
                "batch_size": b.batch_size,
                "compute_input": _duration(b.compute_input),
                "compute_infer": _duration(b.compute_infer),
                "compute_output": _duration(b.compute_output),
            }
            for b in stats.batch_stats
        ],
    }


def _duration(duration: Duration) -> dict[str, int]:
    return {"count": duration.count, "ns": duration.ns}
