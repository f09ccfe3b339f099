"""The statistics extension's JSON document and the routes that name what it reports."""

from __future__ import annotations

import pytest

from inferd.core.errors import NotFound
from inferd.core.statistics import BatchStatistics, Duration, VersionStatistics
from inferd.frontends.http.statistics import statistics_document, statistics_target


def test_document_has_the_protocol_shape() -> None:
    stats = VersionStatistics(
        "m",
        "1",
        inference_count=1,
        execution_count=1,
        success=Duration(1, 25),
        compute_infer=Duration(1, 5),
        batch_stats=[BatchStatistics(1, Duration(1, 1), Duration(1, 5), Duration(1, 2))],
    )
    (document,) = statistics_document([stats])["model_stats"]
    assert document["inference_stats"]["success"] == {"count": 1, "ns": 25}
    assert document["inference_stats"]["compute_infer"] == {"count": 1, "ns": 5}
    assert document["batch_stats"] == [
        {
            "batch_size": 1,
            "compute_input": {"count": 1, "ns": 1},
            "compute_infer": {"count": 1, "ns": 5},
            "compute_output": {"count": 1, "ns": 2},
        }
    ]


def test_routes_name_all_models_one_model_or_one_version() -> None:
    assert statistics_target([]) == ("", "")
    assert statistics_target(["m"]) == ("m", "")
    assert statistics_target(["m", "versions", "2"]) == ("m", "2")
    with pytest.raises(NotFound):
        statistics_target(["m", "2"])
