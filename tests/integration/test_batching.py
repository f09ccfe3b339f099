"""Dynamic batching through the real server and tritonclient.http under concurrent load."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.server import RunningServer, running_server

SIMPLE = generate_models.SIMPLE_CONFIG.replace('name: "simple"\n', "")
CONFIGS = {
    # Two instances take batches from one queue; responses still come back in order.
    "batched": SIMPLE.replace("count: 1", "count: 2")
    + "dynamic_batching { max_queue_delay_microseconds: 5000 preserve_ordering: true }\n",
    "prioritised": SIMPLE
    + """dynamic_batching {
           max_queue_delay_microseconds: 500000
           priority_levels: 2 default_priority_level: 2
           default_queue_policy { max_queue_size: 2 }
         }\n""",
    "ragged": SIMPLE.replace("dims: [ 16 ] }", "dims: [ 16 ], allow_ragged_batch: true }", 1)
    + "dynamic_batching { }\n",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("batching")
    for name, config in CONFIGS.items():
        generate_models.simple_model(repository / name / "1" / "model.onnx")
        (repository / name / "config.pbtxt").write_text(f'name: "{name}"\n{config}')
    with running_server(repository, "--no-strict-readiness") as running:
        yield running


def _inputs(a: np.ndarray, b: np.ndarray) -> list[httpclient.InferInput]:
    inputs = [
        httpclient.InferInput("INPUT0", list(a.shape), "INT32"),
        httpclient.InferInput("INPUT1", list(b.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(a, binary_data=True)
    inputs[1].set_data_from_numpy(b, binary_data=True)
    return inputs


def _model_counts(server: RunningServer, model: str) -> tuple[int, int]:
    client = httpclient.InferenceServerClient(server.http_url)
    stats = client.get_inference_statistics(model)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
    server: RunningServer,
) -> None:
    threads, per_thread = 16, 12

    def worker(index: int) -> int:
        client = httpclient.InferenceServerClient(server.http_url)
        checked = 0
        try:
            for step in range(per_thread):
                rows = 1 + (index + step) % 3  # requests carry 1 to 3 rows each
                a = np.arange(rows * 16, dtype=np.int32).reshape(rows, 16) + 1000 * index + step
                b = np.full((rows, 16), index - step, dtype=np.int32)
                result = client.infer("batched", _inputs(a, b))
                np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
                np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
                checked += rows
        finally:
            client.close()  # in this thread: tritonclient.http's gevent pool belongs to it
        return checked

    before_inferences, before_executions = _model_counts(server, "batched")
    with ThreadPoolExecutor(threads) as pool:
        rows = sum(pool.map(worker, range(threads)))
    inferences, executions = _model_counts(server, "batched")
    assert inferences - before_inferences == rows
    assert executions - before_executions < threads * per_thread  # batches held several


def test_an_out_of_range_priority_is_a_400(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    ones = np.ones((1, 16), dtype=np.int32)
    with pytest.raises(InferenceServerException, match="priority") as caught:
        client.infer("prioritised", _inputs(ones, ones), priority=3)
    assert caught.value.status() == "400"


def test_a_full_queue_is_a_503_and_accepted_requests_still_complete(
    server: RunningServer,
) -> None:
    # The batch waits 0.5 s to fill; the queue behind the forming batch holds only 2.
    def send(value: int) -> int | str:
        # A tritonclient.http client lives on gevent: it must be closed by the thread that
        # made it, or its garbage collection elsewhere raises in gevent.
        client = httpclient.InferenceServerClient(server.http_url)
        a = np.full((1, 16), value, dtype=np.int32)
        try:
            result = client.infer("prioritised", _inputs(a, a))
        except InferenceServerException as exc:
            return str(exc.status())
        finally:
            client.close()
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)
        return 200

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(send, range(6)))
    assert set(statuses) == {200, "503"}
    assert statuses.count("503") >= 2


def test_a_ragged_input_the_graph_takes_unflattened_is_refused_at_load(
    server: RunningServer,
) -> None:
    request = urllib.request.Request(
        f"http://{server.http_url}/v2/repository/index", data=b"{}", method="POST"
    )
    with urllib.request.urlopen(request) as response:
        index = {row["name"]: row for row in json.load(response)}
    assert index["ragged"]["state"] == "UNAVAILABLE"
    assert "allow_ragged_batch" in index["ragged"]["reason"]
    assert "must take shape [-1]" in index["ragged"]["reason"]
    assert index["batched"]["state"] == "READY"
