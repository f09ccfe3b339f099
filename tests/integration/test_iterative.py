"""Iterative sequences (`sequence_batching { iterative_sequence: true }`): continuous batching
over a real server, read by tritonclient's gRPC stream and unary calls. Requests join and
leave a running batch between steps, a later short request finishes before an earlier long
one, decoupled and non-decoupled models hand requests back (inferd's `reschedule()` and
Triton's release flags), a request idles out between steps, a cancelled request frees its
slot, and a backend that cannot iterate refuses the model."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_decoupled import Stream

ISOLATIONS = ("none", "process")

# For STEPS = n: n responses, one per step, TOKEN = 0..n-1 and SIZE = the running batch's
# size at that step; the request is handed back until its last. STEPS < 0: never finishes.
# The count so far is the model's own, per correlation id; each step is logged to `marker`.
GENERATE = """
import time
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]
        self.done = {}

    def execute(self, batch):
        time.sleep(0.01)
        with open(self.marker, "a") as marker:
            for request in batch.requests:
                key = request.parameters["sequence_id"]
                if request.parameters["sequence_start"]:
                    self.done[key] = 0
                token = self.done.pop(key)
                marker.write(f"{request.id}\\n")
                steps = int(request.inputs["STEPS"].reshape(-1)[0])
                size = len(batch.requests)
                outputs = {"TOKEN": np.array([token], np.int32), "SIZE": np.array([size], np.int32)}
                if steps < 0 or token + 1 < steps:
                    self.done[key] = token + 1
                    request.reschedule()
                    request.sender.send(outputs)
                else:
                    request.sender.send(outputs, final=True)
"""

GENERATE_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "STEPS", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [
  {{ name: "TOKEN", data_type: TYPE_INT32, dims: [ 1 ] }},
  {{ name: "SIZE", data_type: TYPE_INT32, dims: [ 1 ] }}
]
sequence_batching {{ iterative_sequence: true }}
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters [
  {{ key: "isolation", value: {{ string_value: "{isolation}" }} }},
  {{ key: "marker", value: {{ string_value: "{marker}" }} }}
]
"""

# Not decoupled, with implicit state: each step adds one to COUNT; the request is handed back
# until COUNT reaches STEPS, and its one answer is the last step's.
COUNT = """
class InferdModel:
    def execute(self, batch):
        count = batch.inputs["COUNT_IN"] + 1
        for row, request in enumerate(batch.requests):
            if count[row, 0] < request.inputs["STEPS"][0, 0]:
                request.reschedule()
        return {"OUT": count, "COUNT_OUT": count}
"""

COUNT_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 4
input [ {{ name: "STEPS", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
sequence_batching {{
  iterative_sequence: true
  state [ {{
    input_name: "COUNT_IN", output_name: "COUNT_OUT", data_type: TYPE_INT32, dims: [ 1 ]
  }} ]
}}
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters [ {{ key: "isolation", value: {{ string_value: "{isolation}" }} }} ]
"""

# Triton's Python API, decoupled (as Triton's QA model `iterative_sequence`, written here):
# for IN = n, n responses OUT = n-1 .. 0, one per step, the request handed back by its
# release flags until the last; the count is kept per correlation id.
TRITON_ITERATIVE = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.remaining = {}

    def execute(self, requests):
        for request in requests:
            key = request.correlation_id()
            if key not in self.remaining:
                count = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0]
                self.remaining[key] = int(count)
            self.remaining[key] -= 1
            out = pb_utils.Tensor("OUT", np.array([self.remaining[key]], np.int32))
            response = pb_utils.InferenceResponse(output_tensors=[out])
            sender = request.get_response_sender()
            if self.remaining[key] <= 0:
                del self.remaining[key]
                sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            else:
                request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
                sender.send(response)
        return None
"""

TRITON_ITERATIVE_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
sequence_batching {{ iterative_sequence: true }}
instance_group [ {{ kind: KIND_CPU }} ]
parameters [ {{ key: "isolation", value: {{ string_value: "{isolation}" }} }} ]
"""

# Triton's Python API, not decoupled (as Triton's QA model `request_rescheduling_addsub`,
# written here): each request is handed back once (None in its place), answered the second
# time; OUTPUT1 is its correlation id, so each request is seen to keep one across its steps.
TRITON_ADD_ONCE = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.seen = set()

    def execute(self, requests):
        responses = []
        for request in requests:
            key = request.correlation_id()
            if key not in self.seen:
                self.seen.add(key)
                request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
                responses.append(None)
                continue
            self.seen.discard(key)
            value = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            outputs = [
                pb_utils.Tensor("OUTPUT0", value + 1),
                pb_utils.Tensor("OUTPUT1", np.array([key], np.int64)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
"""

TRITON_ADD_ONCE_CONFIG = """
name: "{name}"
backend: "python"
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] }} ]
output [
  {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] }},
  {{ name: "OUTPUT1", data_type: TYPE_INT64, dims: [ 1 ] }}
]
sequence_batching {{ iterative_sequence: true }}
instance_group [ {{ kind: KIND_CPU }} ]
parameters [ {{ key: "isolation", value: {{ string_value: "{isolation}" }} }} ]
"""

# Two requests whose IN shapes differ cannot share a step, so they take turns; a step takes
# 300 ms and a request may wait 100 ms between its steps, so the one that waits idles out.
SLOW_STEPS = """
import time
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.steps = {}

    def execute(self, batch):
        time.sleep(0.3)
        for request in batch.requests:
            key = request.parameters["sequence_id"]
            self.steps[key] = self.steps.get(key, 0) + 1
            if self.steps[key] < 3:
                request.reschedule()
        return [{"OUT": np.array([[len(r.inputs["IN"][0])]], np.int32)} for r in batch.requests]
"""

SLOW_STEPS_CONFIG = """
name: "slow_steps"
backend: "python"
max_batch_size: 2
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ -1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
sequence_batching {{ iterative_sequence: true, max_sequence_idle_microseconds: 100000 }}
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
"""


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("iterative")
    for isolation in ISOLATIONS:
        for name, size in ((f"generate_{isolation}", 8), (f"one_slot_{isolation}", 0)):
            marker = root / f"{name}.steps"
            config = GENERATE_CONFIG.format(
                name=name, isolation=isolation, marker=marker, max_batch_size=size
            )
            write(root, name, GENERATE, config)
        for base, code, config in (
            ("count", COUNT, COUNT_CONFIG),
            ("triton_iterative", TRITON_ITERATIVE, TRITON_ITERATIVE_CONFIG),
            ("triton_add_once", TRITON_ADD_ONCE, TRITON_ADD_ONCE_CONFIG),
        ):
            name = f"{base}_{isolation}"
            write(root, name, code, config.format(name=name, isolation=isolation))
    write(root, "slow_steps", SLOW_STEPS, SLOW_STEPS_CONFIG.format())
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


@pytest.fixture
def stream(server: RunningServer) -> Iterator[Stream]:
    opened = Stream(server)
    yield opened
    opened.close()


def send_steps(stream: Stream, model: str, steps: int, request_id: str) -> None:
    """One request of a `generate_*` (batching: [1, 1]) or `one_slot_*` ([1]) model."""
    shape = [1] if model.startswith("one_slot") else [1, 1]
    tensor = grpcclient.InferInput("STEPS", shape, "INT32")
    tensor.set_data_from_numpy(np.full(shape, steps, dtype=np.int32))
    stream.client.async_stream_infer(model, [tensor], request_id=request_id)


def tokens(seen: list[tuple[str, Any, bool]], request_id: str) -> list[int]:
    return [
        int(result.as_numpy("TOKEN")[0])
        for rid, result, _ in seen
        if rid == request_id and result.as_numpy("TOKEN") is not None
    ]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_later_short_request_joins_the_running_batch_and_finishes_first(
    server: RunningServer, stream: Stream, isolation: str
) -> None:
    model = f"generate_{isolation}"
    send_steps(stream, model, 300, "long")
    first, _ = stream.results.get(timeout=60)  # the long request is running
    assert first.get_response().id == "long"
    for index, steps in enumerate((3, 5, 7)):
        send_steps(stream, model, steps, f"short-{index}")
    seen = [("long", first, False), *stream.collect(4)]
    finished = [rid for rid, _, final in seen if final]
    assert finished[-1] == "long"
    assert sorted(finished[:3]) == ["short-0", "short-1", "short-2"]
    assert tokens(seen, "long") == list(range(300))
    for index, steps in enumerate((3, 5, 7)):
        assert tokens(seen, f"short-{index}") == list(range(steps))
    # The short requests ran in the long one's steps: batches of more than one request.
    sizes = [int(r.as_numpy("SIZE")[0]) for rid, r, _ in seen if rid.startswith("short")]
    assert max(sizes, default=0) > 1
    client = httpclient.InferenceServerClient(server.http_url)
    stats = client.get_inference_statistics(model)["model_stats"][0]
    assert any(int(entry["batch_size"]) > 1 for entry in stats["batch_stats"])


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_requests_beyond_the_running_batch_wait_in_the_backlog(
    stream: Stream, isolation: str
) -> None:
    for index in range(3):
        send_steps(stream, f"one_slot_{isolation}", 4, f"queued-{index}")
    seen = stream.collect(3)
    for index in range(3):
        assert tokens(seen, f"queued-{index}") == [0, 1, 2, 3]
    # One slot: each request runs alone, in arrival order.
    assert [rid for rid, _, final in seen if final] == ["queued-0", "queued-1", "queued-2"]
    assert all(int(r.as_numpy("SIZE")[0]) == 1 for _, r, final in seen if not final)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_model_that_is_not_decoupled_answers_after_its_last_step(
    server: RunningServer, isolation: str
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    answers: dict[int, Any] = {}
    done = threading.Semaphore(0)

    def answered(steps: int, result: Any, error: Any) -> None:
        answers[steps] = error if error is not None else int(result.as_numpy("OUT")[0][0])
        done.release()

    counts = (1, 2, 9, 30, 5)
    for steps in counts:
        tensor = grpcclient.InferInput("STEPS", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.array([[steps]], dtype=np.int32))
        client.async_infer(
            f"count_{isolation}",
            [tensor],
            lambda result, error, s=steps: answered(s, result, error),
        )
    for _ in counts:
        assert done.acquire(timeout=60)
    assert answers == {steps: steps for steps in counts}
    client.close()


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_triton_s_release_flags_reschedule_a_decoupled_model_s_request(
    stream: Stream, isolation: str
) -> None:
    for count, request_id in ((3, "three"), (1, "one")):
        tensor = grpcclient.InferInput("IN", [1], "INT32")
        tensor.set_data_from_numpy(np.array([count], dtype=np.int32))
        stream.client.async_stream_infer(
            f"triton_iterative_{isolation}", [tensor], request_id=request_id
        )
    seen = stream.collect(2)
    values = {
        request_id: [int(r.as_numpy("OUT")[0]) for rid, r, _ in seen if rid == request_id]
        for request_id in ("three", "one")
    }
    assert values == {"three": [2, 1, 0], "one": [0]}


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_triton_s_none_answer_reschedules_a_model_that_is_not_decoupled(
    server: RunningServer, isolation: str
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    ids = []
    for value in (1.0, 2.0):
        data = np.full([4], value, dtype=np.float32)
        tensor = grpcclient.InferInput("INPUT0", [4], "FP32")
        tensor.set_data_from_numpy(data)
        result = client.infer(f"triton_add_once_{isolation}", [tensor])
        assert np.array_equal(result.as_numpy("OUTPUT0"), data + 1)
        ids.append(int(result.as_numpy("OUTPUT1")[0]))
    # Each request got a fresh correlation id, kept across its two steps.
    assert all(ids) and ids[0] != ids[1]
    client.close()


def test_a_request_that_waits_too_long_between_steps_idles_out(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    outcomes: dict[str, Any] = {}
    done = threading.Semaphore(0)

    def answered(name: str, result: Any, error: Any) -> None:
        outcomes[name] = error
        done.release()

    for name, length in (("short", 1), ("wide", 2)):
        tensor = grpcclient.InferInput("IN", [1, length], "INT32")
        tensor.set_data_from_numpy(np.zeros([1, length], dtype=np.int32))
        client.async_infer(
            "slow_steps", [tensor], lambda result, error, n=name: answered(n, result, error)
        )
    for _ in range(2):
        assert done.acquire(timeout=60)
    # The first to wait for its next step while the other's runs idles out; the other, then
    # alone, runs its three steps.
    failed = [error for error in outcomes.values() if error is not None]
    assert len(failed) == 1 and isinstance(failed[0], InferenceServerException)
    assert "idled out between two steps" in failed[0].message()
    assert failed[0].status() == "StatusCode.UNAVAILABLE"
    client.close()


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_cancelled_request_is_not_rescheduled_and_frees_its_slot(
    server: RunningServer, repository: Path, isolation: str
) -> None:
    model = f"one_slot_{isolation}"
    marker = repository / f"{model}.steps"
    forever = Stream(server)
    send_steps(forever, model, -1, "forever")
    for _ in range(3):
        forever.results.get(timeout=60)
    waiting = Stream(server)
    send_steps(waiting, model, 2, "after")  # waits in the backlog behind the only slot
    forever.close(cancel=True)
    # The slot comes back: the waiting request runs to its end.
    assert tokens(waiting.collect(1), "after") == [0, 1]
    waiting.close()
    steps = marker.read_text().split()
    last = max(index for index, rid in enumerate(steps) if rid == "forever")
    assert last < steps.index("after")  # no step of the cancelled request ran after it


def test_a_bad_request_is_refused_before_its_first_step(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    two_rows = grpcclient.InferInput("STEPS", [2, 1], "INT32")
    two_rows.set_data_from_numpy(np.array([[1], [2]], dtype=np.int32))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("count_none", [two_rows])
    assert "batch-size 1" in refused.value.message()
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    client.close()


def test_a_backend_that_cannot_iterate_refuses_an_iterative_model(
    tmp_path: Path, model_repository: Path
) -> None:
    shutil.copytree(model_repository / "simple", tmp_path / "simple")
    with (tmp_path / "simple" / "config.pbtxt").open("a") as config:
        config.write("\nsequence_batching { iterative_sequence: true }\n")
    with running_server(tmp_path, "--model-control-mode", "explicit") as running:
        client = grpcclient.InferenceServerClient(running.grpc_url)
        with pytest.raises(InferenceServerException) as refused:
            client.load_model("simple")
        message = refused.value.message()
        assert "iterative_sequence" in message and "onnxruntime" in message
        client.close()


# Triton's own QA models, when a checkout of triton-inference-server/server is named (they are
# not part of this repository): copied unchanged into a repository made here.
TRITON_SERVER = os.environ.get("INFERD_TRITON_SERVER", "")


@pytest.mark.skipif(not TRITON_SERVER, reason="INFERD_TRITON_SERVER names no checkout")
def test_triton_s_iterative_qa_models_run_unchanged(tmp_path: Path) -> None:
    models = Path(TRITON_SERVER) / "qa" / "python_models"
    for model in ("iterative_sequence", "request_rescheduling_addsub"):
        (tmp_path / model / "1").mkdir(parents=True)
        (tmp_path / model / "1" / "model.py").write_text((models / model / "model.py").read_text())
        config = (models / model / "config.pbtxt").read_text()
        (tmp_path / model / "config.pbtxt").write_text(config)
    with running_server(tmp_path) as running:
        # As Triton's grpc_endpoint_test.py: IN = 3 streams OUT = 2, 1, 0.
        opened = Stream(running)
        tensor = grpcclient.InferInput("IN", [1], "INT32")
        tensor.set_data_from_numpy(np.array([3], dtype=np.int32))
        opened.client.async_stream_infer("iterative_sequence", [tensor])
        seen = [opened.results.get(timeout=60) for _ in range(3)]
        assert [int(result.as_numpy("OUT")[0]) for result, _ in seen] == [2, 1, 0]
        opened.close()
        client = grpcclient.InferenceServerClient(running.grpc_url)
        values = [np.random.randn(16).astype(np.float32) for _ in range(2)]
        inputs = []
        for name, value in zip(("INPUT0", "INPUT1"), values, strict=True):
            tensor = grpcclient.InferInput(name, [16], "FP32")
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        result = client.infer("request_rescheduling_addsub", inputs)
        assert np.array_equal(result.as_numpy("OUTPUT0"), values[0] + values[1])
        assert np.array_equal(result.as_numpy("OUTPUT1"), values[0] - values[1])
        client.close()
