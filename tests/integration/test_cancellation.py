"""Cancellation counted and cleaned up: a cancelled gRPC stream, a unary gRPC call past its
deadline and an HTTP infer whose client disconnects each count as a cancelled failure in the
statistics and /metrics, leave no request queued, and the server keeps serving; many
cancelled streams in a row leave no queued request, no held slot and no growing memory."""

from __future__ import annotations

import json
import queue
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server

# Logs each request it starts, then holds the model's one instance until the file named by
# the request's value exists (0: answer at once), so that later requests wait in its queue.
SLOW = """
import os
import time

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]

    def execute(self, batch):
        request = batch.requests[0]
        with open(self.marker, "a") as marker:
            marker.write(f"start {request.id}\\n")
        release = self.marker + ".release"
        deadline = time.monotonic() + 30
        while request.inputs["IN"][0] and not os.path.exists(release):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        return {"OUT": request.inputs["IN"]}
"""

SLOW_CONFIG = """
name: "slow"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
parameters [ {{ key: "marker", value: {{ string_value: "{marker}" }} }} ]
"""

# Decoupled: one response, then waits until the client cancels.
HOLD = """
import time
import numpy as np

class InferdModel:
    def execute(self, batch):
        sender = batch.requests[0].sender
        sender.send({"OUT": np.array([1], np.int32)})
        deadline = time.monotonic() + 30
        while not sender.is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        sender.close()
"""

HOLD_CONFIG = """
name: "hold"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""

# Batching and decoupled: each request of the batch gets one response of its IN (0: final at
# once); the others are held until their clients cancel them.
BATCHED = """
import time

class InferdModel:
    def execute(self, batch):
        held = []
        for request in batch.requests:
            value = request.inputs["IN"]
            request.sender.send({"OUT": value}, final=not value.any())
            if value.any():
                held.append(request.sender)
        deadline = time.monotonic() + 30
        while held and time.monotonic() < deadline:
            held = [sender for sender in held if not sender.is_cancelled()]
            time.sleep(0.01)
"""

BATCHED_CONFIG = """
name: "batched"
backend: "python"
max_batch_size: 4
model_transaction_policy { decoupled: true }
dynamic_batching { }
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""

# Iterative: one response per step; IN = 0 finishes at its first step, any other value never
# does (the request is handed back until its client cancels it).
ITERATIVE = """
import time

class InferdModel:
    def execute(self, batch):
        time.sleep(0.005)
        for request in batch.requests:
            value = request.inputs["IN"]
            if value.any():
                request.reschedule()
            request.sender.send({"OUT": value}, final=not value.any())
"""

ITERATIVE_CONFIG = """
name: "iterative"
backend: "python"
max_batch_size: 2
model_transaction_policy { decoupled: true }
sequence_batching { iterative_sequence: true }
instance_group [ { count: 1, kind: KIND_CPU } ]
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cancellation")
    write(root, "slow", SLOW, SLOW_CONFIG.format(marker=root / "slow.seen"))
    write(root, "hold", HOLD, HOLD_CONFIG)
    write(root, "batched", BATCHED, BATCHED_CONFIG)
    write(root, "iterative", ITERATIVE, ITERATIVE_CONFIG)
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


def metric(server: RunningServer, name: str, model: str, reason: str = "") -> float:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    labels = f'model="{model}",' + (f'reason="{reason}",' if reason else "") + 'version="1"'
    prefix = f"{name}{{{labels}}} "
    values = [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]
    return float(values[0]) if values else 0.0


def fail_count(server: RunningServer, model: str) -> int:
    url = f"http://{server.http_url}/v2/models/{model}/stats"
    with urllib.request.urlopen(url, timeout=10) as answer:
        stats = json.load(answer)["model_stats"][0]["inference_stats"]
    return int(stats["fail"]["count"])


def eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def started(repository: Path) -> list[str]:
    marker = repository / "slow.seen"
    lines = marker.read_text().splitlines() if marker.exists() else []
    return [line.removeprefix("start ") for line in lines]


def infer_slow(server: RunningServer, value: int, request_id: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([value], np.int32))
    result = client.infer("slow", [tensor], request_id=request_id)
    assert result.as_numpy("OUT").tolist() == [value]


def test_a_cancelled_stream_counts_as_a_cancelled_failure(server: RunningServer) -> None:
    cancelled = metric(server, "inferd_inference_request_cancelled", "hold")
    failed = fail_count(server, "hold")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    answers: list[object] = []
    client.start_stream(callback=lambda result, error: answers.append(result or error))
    tensor = grpcclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([1], np.int32))
    client.async_stream_infer("hold", [tensor], request_id="held")
    eventually(lambda: len(answers) == 1)
    client.stop_stream(cancel_requests=True)

    eventually(lambda: metric(server, "inferd_inference_request_cancelled", "hold") > cancelled)
    assert metric(server, "inferd_inference_request_cancelled", "hold") == cancelled + 1
    assert fail_count(server, "hold") == failed + 1  # as in Triton, a cancelled request failed
    # Triton's failure reason label (issue #19): the cancelled request is CANCELED.
    assert metric(server, "nv_inference_request_failure", "hold", "CANCELED") == failed + 1
    assert metric(server, "nv_inference_pending_request_count", "hold") == 0


def test_a_unary_grpc_call_past_its_deadline_leaves_the_queue(
    server: RunningServer, repository: Path
) -> None:
    (repository / "slow.seen.release").unlink(missing_ok=True)
    cancelled = metric(server, "inferd_inference_request_cancelled", "slow")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([1], np.int32))
    running: list[object] = []
    client.async_infer(
        "slow",
        [tensor],
        lambda result, error: running.append(result or error),
        request_id="grpc-long",
    )
    eventually(lambda: "grpc-long" in started(repository))
    # Waits behind `grpc-long` for the one instance until its deadline passes.
    with pytest.raises(InferenceServerException, match="Deadline"):
        client.infer("slow", [tensor], request_id="grpc-queued", client_timeout=2)
    eventually(lambda: metric(server, "inferd_inference_request_cancelled", "slow") > cancelled)
    assert metric(server, "nv_inference_pending_request_count", "slow") == 0

    (repository / "slow.seen.release").touch()
    eventually(lambda: len(running) == 1)
    infer_slow(server, 0, "grpc-next")  # served, and `grpc-queued` never ran
    assert "grpc-queued" not in started(repository)
    assert started(repository)[-1] == "grpc-next"


def open_stream(
    server: RunningServer,
) -> tuple[grpcclient.InferenceServerClient, queue.Queue[object]]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    answers: queue.Queue[object] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put(result or error))
    return client, answers


def send(client: grpcclient.InferenceServerClient, model: str, value: int, id_: str) -> None:
    tensor = grpcclient.InferInput("IN", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[value]], np.int32))
    client.async_stream_infer(model, [tensor], request_id=id_)


def cancel_streams(server: RunningServer, model: str, rounds: int, per_stream: int) -> None:
    """`rounds` streams one after the other, each cancelled once its first response came."""
    for round_ in range(rounds):
        client, answers = open_stream(server)
        for index in range(per_stream):
            send(client, model, 1, f"r{round_}-{index}")
        answers.get(timeout=60)
        client.stop_stream(cancel_requests=True)
        client.close()


def finishes(server: RunningServer, model: str) -> bool:
    """A new request (IN = 0) gets its final response."""
    client, answers = open_stream(server)
    send(client, model, 0, "after")
    answer = answers.get(timeout=60)
    client.stop_stream()
    client.close()
    return isinstance(answer, grpcclient.InferResult)


def rss_kib(server: RunningServer) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1])


@pytest.mark.parametrize("model", ["batched", "iterative"])
def test_many_cancelled_streams_leave_nothing_behind(server: RunningServer, model: str) -> None:
    cancel_streams(server, model, rounds=5, per_stream=3)  # warm up: threads, buffers
    before = rss_kib(server)

    cancel_streams(server, model, rounds=50, per_stream=3)
    # Every request was cancelled, queued or running (those a stream still carried when it
    # was cancelled never reached the server), and none is left queued...
    eventually(lambda: metric(server, "nv_inference_pending_request_count", model) == 0)
    # ...nor holds a slot or an instance: new requests run to their end.
    assert finishes(server, model)
    assert finishes(server, model)
    assert metric(server, "nv_inference_request_success", model) == 2
    cancelled = metric(server, "inferd_inference_request_cancelled", model)
    assert 55 <= cancelled <= 165  # at least the answered request of each stream
    assert metric(server, "nv_inference_request_failure", model, "CANCELED") == cancelled
    # 150 requests leaked whole would show; allocator noise stays far below this.
    assert rss_kib(server) - before < 64 * 1024
