"""Triton's preferred-batch-size rules through the real server and tritonclient.grpc: the
cases of Triton's qa/L0_batcher about the largest preferred size (preferred sizes 2 and 6).

Each model's statistics tell which batches ran; a queue delay of ten minutes, which no test
waits out, shows that a request ran because of a size rule and not because its delay ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.server import RunningServer, running_server

BATCHING = "dynamic_batching {{ preferred_batch_size: [ 2, 6 ] max_queue_delay_microseconds: {} }}"
SIMPLE = generate_models.SIMPLE_CONFIG.replace('name: "simple"\n', "").replace(
    "max_batch_size: 8", "max_batch_size: 16"
)
CONFIGS = {
    "static_gt_max": SIMPLE + BATCHING.format(600_000_000),
    "multi_gt_max": SIMPLE + BATCHING.format(600_000_000),
    "multi_sum_gt_max": SIMPLE + BATCHING.format(5_000_000),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("preferred")
    for name, config in CONFIGS.items():
        generate_models.simple_model(repository / name / "1" / "model.onnx")
        (repository / name / "config.pbtxt").write_text(f'name: "{name}"\n{config}\n')
    with running_server(repository) as running:
        yield running


def _infer(server: RunningServer, model: str, rows: int, errors: list[BaseException]) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    a = np.arange(rows * 16, dtype=np.int32).reshape(rows, 16)
    b = np.full((rows, 16), rows, dtype=np.int32)
    inputs = [
        grpcclient.InferInput("INPUT0", [rows, 16], "INT32"),
        grpcclient.InferInput("INPUT1", [rows, 16], "INT32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    try:
        # Far below the ten-minute queue delay: only a size rule answers in time.
        result = client.infer(model, inputs, client_timeout=60)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    except BaseException as exc:  # reported by the test's thread
        errors.append(exc)
    finally:
        client.close()


def _send(server: RunningServer, model: str, *batches: int) -> None:
    """Send requests of these batch sizes one second apart (as Triton's test does), and wait."""
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_infer, args=(server, model, rows, errors)) for rows in batches
    ]
    for index, thread in enumerate(threads):
        if index:
            time.sleep(1)  # the first request is in the queue by then (the outcome is the
            # same if it is not: both rules look at the queue as a whole)
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _executions(server: RunningServer, model: str) -> dict[int, int]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        stats = client.get_inference_statistics(model, "1").model_stats[0]
    finally:
        client.close()
    return {batch.batch_size: batch.compute_infer.count for batch in stats.batch_stats}


def test_a_batch_past_the_largest_preferred_size_runs_at_once(server: RunningServer) -> None:
    _send(server, "static_gt_max", 7)
    assert _executions(server, "static_gt_max") == {7: 1}


def test_a_pending_batch_runs_when_the_next_request_is_past_the_largest_preferred_size(
    server: RunningServer,
) -> None:
    _send(server, "multi_gt_max", 3, 7)
    assert _executions(server, "multi_gt_max") == {3: 1, 7: 1}


def test_requests_whose_sum_passes_the_largest_preferred_size_run_apart(
    server: RunningServer,
) -> None:
    # The first runs at once (well before its 5 s delay ends: the second arrives 1 s after
    # it); the second alone (4 rows) waits for its own delay.
    _send(server, "multi_sum_gt_max", 3, 4)
    assert _executions(server, "multi_sum_gt_max") == {3: 1, 4: 1}
