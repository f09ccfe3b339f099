"""Triton's scheduler test hook through the real server: with TRITONSERVER_DELAY_SCHEDULER
set, requests sent one by one batch together; and a direct sequence batch padded with an
empty slot counts in the statistics at its executed size, as in Triton's
`qa/L0_sequence_batcher` `test_queue_delay_*` cases."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.integration.server import RunningServer, running_server

SEQUENCE = "accumulate_direct"
ADD = "add_one"


def _config(name: str, max_batch_size: int, scheduling: str) -> str:
    """A Python model with one instance taking INPUT and giving OUTPUT (INT32 [1])."""
    return f"""
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
{scheduling}
"""


# Triton's sequence QA model: OUTPUT = READY * (INPUT + START); four slots on one instance.
SEQUENCE_CONFIG = _config(
    SEQUENCE,
    4,
    """sequence_batching {
  direct { max_queue_delay_microseconds: 3000000, minimum_slot_utilization: 0 }
  control_input [
    { name: "START", control [ { kind: CONTROL_SEQUENCE_START, int32_false_true: [ 0, 1 ] } ] },
    { name: "READY", control [ { kind: CONTROL_SEQUENCE_READY, int32_false_true: [ 0, 1 ] } ] }
  ]
}""",
)
SEQUENCE_MODEL = """
class InferdModel:
    def execute(self, batch):
        inputs = batch.inputs
        return {"OUTPUT": inputs["READY"] * (inputs["INPUT"] + inputs["START"])}
"""
# Dynamic batching with no queue delay: without the hook, each request would run alone.
ADD_CONFIG = _config(ADD, 8, "dynamic_batching { }")
ADD_MODEL = """
class InferdModel:
    def execute(self, batch):
        return {"OUTPUT": batch.inputs["INPUT"] + 1}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("delay_hook")
    for name, config, model in (
        (SEQUENCE, SEQUENCE_CONFIG, SEQUENCE_MODEL),
        (ADD, ADD_CONFIG, ADD_MODEL),
    ):
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(config)
        (repository / name / "1" / "model.py").write_text(model)
    env = {"TRITONSERVER_DELAY_SCHEDULER": "2", "TRITONSERVER_BACKLOG_DELAY_SCHEDULER": "0"}
    with running_server(repository, "--log-level", "debug", env=env) as running:
        yield running


def _pending(server: RunningServer, model: str) -> float:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    prefix = f'nv_inference_pending_request_count{{model="{model}",version="1"}} '
    values = [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]
    return float(values[0]) if values else 0.0


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.02)


def _infer(server: RunningServer, model: str, value: int, **sequence: Any) -> int:
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("INPUT", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[value]], dtype=np.int32))
    try:
        result = client.infer(model, [tensor], **sequence)
        return int(result.as_numpy("OUTPUT")[0, 0])
    finally:
        client.close()


def _stats(server: RunningServer, model: str) -> dict[str, Any]:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        stats: dict[str, Any] = client.get_inference_statistics(model, "1")["model_stats"][0]
        return stats
    finally:
        client.close()


def _batch_sizes(stats: dict[str, Any]) -> dict[int, int]:
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]}


def _send_first(
    pool: ThreadPoolExecutor, server: RunningServer, model: str, **kw: Any
) -> Future[int]:
    """Send one request and return once the server holds it in the queue."""
    future = pool.submit(_infer, server, model, **kw)
    _wait_until(lambda: _pending(server, model) == 1)
    return future


def test_requests_sent_one_by_one_batch_together(server: RunningServer) -> None:
    with ThreadPoolExecutor(2) as pool:
        first = _send_first(pool, server, ADD, value=1)
        second = pool.submit(_infer, server, ADD, 2)
        assert (first.result(30), second.result(30)) == (2, 3)
    stats = _stats(server, ADD)
    assert _batch_sizes(stats) == {2: 1}
    assert (stats["execution_count"], stats["inference_count"]) == (1, 2)
    assert server.count_logged("Delaying batcher thread of add_one_0_0 until 2 queued requests", 1)


def test_a_padded_direct_batch_counts_at_its_executed_size(server: RunningServer) -> None:
    with ThreadPoolExecutor(2) as pool:
        # Sequence 1001 takes slot 0 and sends one request; 1002 takes slot 1 and sends two.
        one = _send_first(pool, server, SEQUENCE, value=1, sequence_id=1001, sequence_start=True)
        two = pool.submit(_infer, server, SEQUENCE, 11, sequence_id=1002, sequence_start=True)
        assert (one.result(30), two.result(30)) == (2, 12)
    # Slot 0 has nothing queued: the batch is [padding, 1002] (READY 0 on the padding row).
    assert _infer(server, SEQUENCE, 12, sequence_id=1002, sequence_end=True) == 12
    stats = _stats(server, SEQUENCE)
    assert _batch_sizes(stats) == {2: 2}
    assert (stats["execution_count"], stats["inference_count"]) == (2, 3)
