"""The statistics extension over tritonclient.http, and /metrics as Prometheus scrapes it."""

from __future__ import annotations

import urllib.request
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.integration.http_helpers import get_json
from tests.integration.server import RunningServer

REQUESTS = 5


def simple_inputs(rows: int = 1) -> list[httpclient.InferInput]:
    inputs = [
        httpclient.InferInput("INPUT0", [rows, 16], "INT32"),
        httpclient.InferInput("INPUT1", [rows, 16], "INT32"),
    ]
    for item in inputs:
        item.set_data_from_numpy(np.ones((rows, 16), dtype=np.int32), binary_data=True)
    return inputs


def simple_stats(client: httpclient.InferenceServerClient) -> dict[str, Any]:
    (stats,) = client.get_inference_statistics("simple", "1")["model_stats"]
    assert (stats["name"], stats["version"]) == ("simple", "1")
    return stats  # type: ignore[no-any-return]


def scrape(server: RunningServer) -> dict[tuple[str, str, str], float]:
    """{(sample name, model, version): value} from /metrics."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    return {
        (
            sample.name,
            sample.labels.get("model", ""),
            sample.labels.get("version", ""),
        ): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "le" not in sample.labels
    }


def test_statistics_count_exactly_the_requests_sent(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    before = simple_stats(client)
    for _ in range(REQUESTS):
        client.infer("simple", simple_inputs())
    client.infer("simple", simple_inputs(rows=3))
    with pytest.raises(InferenceServerException):
        client.infer("simple", [simple_inputs()[0]])  # INPUT1 missing: a failed request
    after = simple_stats(client)

    def delta(*path: str) -> int:
        old: Any = before
        new: Any = after
        for key in path:
            old, new = old[key], new[key]
        return int(new) - int(old)

    assert delta("inference_stats", "success", "count") == REQUESTS + 1
    assert delta("inference_stats", "fail", "count") == 1
    assert delta("inference_count") == REQUESTS + 3  # rows
    assert delta("execution_count") == REQUESTS + 1  # one request at a time: no batching
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert delta("inference_stats", phase, "count") == REQUESTS + 1
        assert delta("inference_stats", phase, "ns") > 0
    assert delta("inference_stats", "success", "ns") > delta("inference_stats", "queue", "ns")
    assert after["last_inference"] >= before["last_inference"]
    assert after["last_inference"] > 0
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    assert sizes[3] >= 1


def test_statistics_of_every_model_and_of_unknown_ones(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    names = {(s["name"], s["version"]) for s in client.get_inference_statistics()["model_stats"]}
    assert {("simple", "1"), ("mlp", "1")} <= names
    status, body = get_json(server.http_port, "/v2/models/nope/stats")
    assert status == 404 and "nope" in body["error"]
    status, body = get_json(server.http_port, "/v2/models/simple/versions/9/stats")
    assert status == 404


def test_metrics_counters_move_with_requests(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    key = ("nv_inference_request_success", "simple", "1")
    before = scrape(server)
    for _ in range(REQUESTS):
        client.infer("simple", simple_inputs())
    after = scrape(server)

    assert after[key] - before[key] == REQUESTS
    for name in ("nv_inference_count", "nv_inference_exec_count"):
        assert after[(name, "simple", "1")] - before[(name, "simple", "1")] == REQUESTS
    histogram = ("inferd_request_duration_seconds_count", "simple", "1")
    assert after[histogram] - before.get(histogram, 0) == REQUESTS
    for name in ("request", "queue", "compute_infer"):
        metric = (f"nv_inference_{name}_duration_us", "simple", "1")
        assert after[metric] > before[metric]
    assert after[("nv_inference_pending_request_count", "simple", "1")] == 0
    # /metrics and the statistics extension count the same requests.
    stats = simple_stats(client)
    assert after[key] == stats["inference_stats"]["success"]["count"]
