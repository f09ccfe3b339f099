"""Triton's latency summaries and first-response histogram on a running server: after N
requests through tritonclient the summaries count exactly N, with a value per quantile asked
for; without `summary_latencies=true` they are absent; a decoupled model's first response is
counted once per request."""

from __future__ import annotations

import queue
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.model_files import simple_copy, write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_trace_logging import infer

REQUESTS = 7
SUMMARIES = [
    f"nv_inference_{name}_summary_us"
    for name in ("request", "queue", "compute_input", "compute_infer", "compute_output")
]

# Three responses per request, then the final flag on its own.
THREE = """
import numpy as np

class InferdModel:
    def execute(self, batch):
        for request in batch.requests:
            for index in range(3):
                request.sender.send({"OUT": np.array([index], np.int32)})
            request.sender.close()
"""
THREE_CONFIG = """
name: "three"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""


def samples(server: RunningServer, model: str) -> dict[tuple[str, str], float]:
    """{(sample name, quantile or le): value} of one model's samples on /metrics."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, sample.labels.get("quantile", sample.labels.get("le", ""))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("model") == model
    }


@pytest.fixture(scope="module")
def repository(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("summaries")
    (root / "simple").symlink_to(model_repository / "simple", target_is_directory=True)
    # `simple` again, with the response cache on.
    simple_copy(model_repository, root, "cached", "response_cache { enable: true }\n")
    write(root, "three", THREE, THREE_CONFIG)
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    config = ("--metrics-config", "summary_latencies=true", "--cache-config", "local,size=1048576")
    quantiles = ("--metrics-config", "summary_quantiles=0.5:0.05,0.99:0.001")
    with running_server(repository, *config, *quantiles) as running:
        yield running


def test_summaries_count_the_requests_sent(server: RunningServer) -> None:
    infer(server, REQUESTS)
    got = samples(server, "simple")
    for name in SUMMARIES:
        assert got[f"{name}_count", ""] == REQUESTS, name
        assert got[f"{name}_sum", ""] > 0, name
        assert 0 < got[name, "0.5"] <= got[name, "0.99"], name
        assert (name, "0.9") not in got  # only the quantiles asked for
    # The sum agrees with Triton's cumulative counter, as Triton's docs say it should.
    assert got["nv_inference_queue_summary_us_sum", ""] == pytest.approx(
        got["nv_inference_queue_duration_us", ""], abs=1
    )
    # Every request had its one response.
    assert got["nv_inference_first_response_histogram_ms_count", ""] == REQUESTS
    assert got["nv_inference_first_response_histogram_ms_bucket", "+Inf"] == REQUESTS


def stream_three(server: RunningServer, values: list[int]) -> None:
    """One request to `three` per value, over one gRPC stream; returns after all 3 responses
    of each came back."""
    responses: queue.Queue[object] = queue.Queue()
    with closing(grpcclient.InferenceServerClient(server.grpc_url)) as client:
        client.start_stream(callback=lambda result, error: responses.put(error or result))
        for value in values:
            tensor = grpcclient.InferInput("IN", [1], "INT32")
            tensor.set_data_from_numpy(np.array([value], np.int32))
            client.async_stream_infer("three", [tensor])
        for _ in range(3 * len(values)):
            assert isinstance(responses.get(timeout=60), grpcclient.InferResult)
        client.stop_stream()


def test_a_decoupled_models_first_response_counts_once_per_request(
    server: RunningServer,
) -> None:
    stream_three(server, [1, 2])
    got = samples(server, "three")
    assert got["nv_inference_first_response_histogram_ms_count", ""] == 2
    assert got["nv_inference_request_summary_us_count", ""] == 2


def test_cache_summaries_count_hits_and_misses(server: RunningServer) -> None:
    infer(server, 3, model="cached")  # the same request: a miss, then two hits
    got = samples(server, "cached")
    assert got["nv_cache_miss_summary_per_model_count", ""] == 1
    assert got["nv_cache_hit_summary_per_model_count", ""] == 2
    assert got["nv_cache_hit_summary_per_model", "0.5"] > 0
    assert got["nv_inference_queue_summary_us_count", ""] == 3
    assert got["nv_inference_compute_infer_summary_us_count", ""] == 1
    assert "nv_cache_hit_summary_per_model_count" not in {n for n, _ in samples(server, "simple")}


def test_a_version_using_the_cache_has_no_request_summary(server: RunningServer) -> None:
    infer(server, 2, model="cached")
    infer(server, 1)
    cached = {name for name, _ in samples(server, "cached")}
    assert not [name for name in cached if name.startswith("nv_inference_request_summary_us")]
    assert {"nv_inference_queue_summary_us_count", "nv_cache_hit_summary_per_model_count"} <= cached
    assert "nv_inference_request_summary_us_count" in {n for n, _ in samples(server, "simple")}


def test_summaries_are_off_by_default(model_repository: Path) -> None:
    with running_server(model_repository) as server:
        infer(server, 2)
        names = {name for name, _ in samples(server, "simple")}
    assert not [name for name in names if "_summary_us" in name]
    assert "nv_inference_first_response_histogram_ms_count" in names  # histograms are on
