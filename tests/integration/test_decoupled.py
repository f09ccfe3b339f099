"""Decoupled models over gRPC streaming, read by tritonclient's stream callbacks: 0, 1 and
many responses per request, requests interleaved on one stream, empty final responses, an
error mid-stream, the unary endpoints' errors, a refused load, cancellation seen by the
model, and outputs asked for, classified or reshaped in each response, for Python models in
the server's process and in worker processes."""

from __future__ import annotations

import os
import queue
import shutil
import time
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

ISOLATIONS = ("none", "process")

# Streams IN back one element per response, from a thread of its own that outlives
# `execute`; a negative element fails the request there.
REPEAT = """
import threading
import numpy as np

class InferdModel:
    def execute(self, batch):
        for request in batch.requests:
            values = request.inputs["IN"].copy()
            threading.Thread(target=self.respond, args=(request.sender, values)).start()

    def respond(self, sender, values):
        for index, value in enumerate(values):
            if value < 0:
                sender.send_error(f"negative value at index {index}")
                return
            sender.send({"OUT": np.array([value], np.int32), "IDX": np.array([index], np.uint32)})
        sender.close()
"""

# The same from an `async def execute`, through tasks that run after it returned; the last
# response carries the final flag itself.
REPEAT_ASYNC = """
import asyncio
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.tasks = set()

    async def execute(self, batch):
        for request in batch.requests:
            task = asyncio.create_task(self.respond(request.sender, request.inputs["IN"].copy()))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def respond(self, sender, values):
        if not len(values):
            sender.close()
        for index, value in enumerate(values):
            await asyncio.sleep(0)
            outputs = {"OUT": np.array([value], np.int32), "IDX": np.array([index], np.uint32)}
            sender.send(outputs, final=index == len(values) - 1)
"""

# Logs each request it starts; sends one response, then waits for the client to cancel, and
# logs what it saw.
CANCEL = """
import time
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]

    def log(self, line):
        with open(self.marker, "a") as marker:
            marker.write(line + "\\n")

    def execute(self, batch):
        request = batch.requests[0]
        self.log(f"start {request.id}")
        sender = request.sender
        response = {"OUT": np.array([1], np.int32), "IDX": np.array([0], np.uint32)}
        sender.send(response)
        deadline = time.monotonic() + 30
        while not sender.is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        delivered = sender.send(response)
        self.log(f"{request.id} cancelled={sender.is_cancelled()} delivered={delivered}")
"""

# Triton's Python API: for IN = n, n responses of OUT = n from a thread, then the final flag
# alone (as Triton's `square` example does).
TRITON_SQUARE = """
import json
import threading
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("needs a decoupled transaction policy")

    def execute(self, requests):
        for request in requests:
            count = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0]
            sender = request.get_response_sender()
            threading.Thread(target=self.respond, args=(sender, int(count))).start()
        return None

    def respond(self, sender, count):
        for _ in range(count):
            out = pb_utils.Tensor("OUT", np.array([count], np.int32))
            sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
"""

# A batching decoupled model: one response per request of the batch, from its own rows, and a
# count of the requests it executed together.
DOUBLE = """
import numpy as np

class InferdModel:
    def execute(self, batch):
        for request in batch.requests:
            together = np.full((request.end - request.start, 1), len(batch.requests), np.int32)
            request.sender.send({"OUT": request.inputs["IN"] * 2, "TOGETHER": together})
            request.sender.close()
"""

DOUBLE_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 8
model_transaction_policy {{ decoupled: true }}
dynamic_batching {{ max_queue_delay_microseconds: 2000000, preferred_batch_size: [ 4 ] }}
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 2 ] }} ]
output [
  {{ name: "OUT", data_type: TYPE_INT32, dims: [ 2 ] }},
  {{ name: "TOGETHER", data_type: TYPE_INT32, dims: [ 1 ] }}
]
parameters [ {{ key: "isolation", value: {{ string_value: "{isolation}" }} }} ]
"""

# Not decoupled: one answer per request, which streams too.
PLAIN = """
class InferdModel:
    def execute(self, batch):
        return {"OUT": batch.inputs["IN"], "IDX": batch.inputs["IN"].astype("uint32")}
"""

REPEAT_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ -1 ] }} ]
output [
  {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }},
  {{ name: "IDX", data_type: TYPE_UINT32, dims: [ 1 ] }}
]
parameters [
  {{ key: "isolation", value: {{ string_value: "{isolation}" }} }},
  {{ key: "marker", value: {{ string_value: "{marker}" }} }}
]
"""

# REPEAT's OUT, of shape [1], comes to the client in its configured dims [1, 1].
OUT_RESHAPED = (
    '{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }',
    '{ name: "OUT", data_type: TYPE_INT32, dims: [ 1, 1 ], reshape: { shape: [ 1 ] } }',
)

SQUARE_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
parameters [ {{ key: "isolation", value: {{ string_value: "{isolation}" }} }} ]
"""


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("decoupled")
    unary = REPEAT_CONFIG.replace("model_transaction_policy {{ decoupled: true }}\n", "")
    write(root, "plain", PLAIN, unary.format(name="plain", isolation="none", marker=""))
    for isolation in ISOLATIONS:
        models = {"repeat": REPEAT, "repeat_async": REPEAT_ASYNC, "cancel": CANCEL}
        for base, code in models.items():
            name = f"{base}_{isolation}"
            marker = root / f"{name}.seen"
            write(
                root,
                name,
                code,
                REPEAT_CONFIG.format(name=name, isolation=isolation, marker=marker),
            )
        name = f"repeat_reshaped_{isolation}"
        config = REPEAT_CONFIG.format(name=name, isolation=isolation, marker="")
        write(root, name, REPEAT, config.replace(*OUT_RESHAPED))
        name = f"double_{isolation}"
        write(root, name, DOUBLE, DOUBLE_CONFIG.format(name=name, isolation=isolation))
        name = f"square_{isolation}"
        write(root, name, TRITON_SQUARE, SQUARE_CONFIG.format(name=name, isolation=isolation))
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


class Stream:
    """A tritonclient gRPC stream whose callback results are read per request id."""

    def __init__(self, server: RunningServer) -> None:
        self.client = grpcclient.InferenceServerClient(server.grpc_url)
        self.results: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.results.put((result, error)))

    def send(
        self, model: str, values: list[int], request_id: str, empty_final: bool = True
    ) -> None:
        data = np.array(values, dtype=np.int32)
        tensor = grpcclient.InferInput("IN", list(data.shape), "INT32")
        tensor.set_data_from_numpy(data)
        self.client.async_stream_infer(
            model, [tensor], request_id=request_id, enable_empty_final_response=empty_final
        )

    def collect(self, finals: int) -> list[tuple[str, Any, bool]]:
        """(request id, result or error, final) in arrival order, until `finals` requests
        ended (with a final response, or an error)."""
        seen: list[tuple[str, Any, bool]] = []
        while finals:
            result, error = self.results.get(timeout=60)
            if error is not None:
                seen.append((error.message(), error, True))
                finals -= 1
                continue
            response = result.get_response()
            final = response.parameters["triton_final_response"].bool_param
            seen.append((response.id, result, final))
            finals -= final
        return seen

    def close(self, cancel: bool = False) -> None:
        self.client.stop_stream(cancel_requests=cancel)
        self.client.close()


@pytest.fixture
def stream(server: RunningServer) -> Iterator[Stream]:
    opened = Stream(server)
    yield opened
    opened.close()


def outputs(seen: list[tuple[str, Any, bool]], request_id: str) -> list[tuple[int, int]]:
    """(OUT, IDX) of each response of one request that carries outputs."""
    return [
        (int(result.as_numpy("OUT")[0]), int(result.as_numpy("IDX")[0]))
        for rid, result, _ in seen
        if rid == request_id and result.as_numpy("OUT") is not None
    ]


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("model", ["repeat", "repeat_async"])
@pytest.mark.parametrize("values", [[], [7], [5, 6, 7, 8, 9, 10, 11, 12]])
def test_every_response_arrives_in_order_then_the_final_flag(
    stream: Stream, model: str, isolation: str, values: list[int]
) -> None:
    stream.send(f"{model}_{isolation}", values, "r1")
    seen = stream.collect(1)
    assert outputs(seen, "r1") == [(value, index) for index, value in enumerate(values)]
    assert all(rid == "r1" for rid, _, _ in seen)
    assert [final for _, _, final in seen][-1] is True
    assert not any(final for _, _, final in seen[:-1])


def test_a_model_that_is_not_decoupled_answers_once_on_the_same_stream(stream: Stream) -> None:
    stream.send("plain", [8], "plain-1")
    stream.send("repeat_none", [1, 2], "streamed")
    stream.send("plain", [9], "plain-2")
    seen = stream.collect(3)
    plain = [(rid, final) for rid, _, final in seen if rid.startswith("plain")]
    assert plain == [("plain-1", True), ("plain-2", True)]  # one each, in request order
    assert outputs(seen, "plain-1") == [(8, 8)]
    assert outputs(seen, "streamed") == [(1, 0), (2, 1)]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_requests_interleave_on_one_stream(stream: Stream, isolation: str) -> None:
    ids = [f"req-{n}" for n in range(6)]
    for n, request_id in enumerate(ids):
        stream.send(f"repeat_{isolation}", list(range(n * 10, n * 10 + n + 1)), request_id)
    seen = stream.collect(len(ids))
    for n, request_id in enumerate(ids):
        expected = [(n * 10 + index, index) for index in range(n + 1)]
        assert outputs(seen, request_id) == expected
        finals = [final for rid, _, final in seen if rid == request_id]
        assert finals == [False] * (n + 1) + [True]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_without_empty_final_responses_only_outputs_arrive(stream: Stream, isolation: str) -> None:
    stream.send(f"repeat_{isolation}", [1, 2, 3], "quiet", empty_final=False)
    stream.send(f"repeat_{isolation}", [4], "marker", empty_final=True)
    seen = stream.collect(1)  # `marker` ends; `quiet` sends no final response of its own
    while len(outputs(seen, "quiet")) < 3:
        seen += [(r.get_response().id, r, False) for r, _ in [stream.results.get(timeout=60)]]
    assert outputs(seen, "quiet") == [(1, 0), (2, 1), (3, 2)]
    for rid, result, _ in seen:
        if rid == "quiet":
            assert not result.get_response().parameters["triton_final_response"].bool_param


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_an_error_mid_stream_ends_only_its_request(stream: Stream, isolation: str) -> None:
    stream.send(f"repeat_{isolation}", [1, 2, -1, 4], "bad")
    seen = stream.collect(1)
    assert outputs(seen, "bad") == [(1, 0), (2, 1)]
    message, error, _ = seen[-1]
    assert isinstance(error, InferenceServerException)
    assert "negative value at index 2" in message
    stream.send(f"repeat_{isolation}", [3], "after")  # the stream stays open
    assert outputs(stream.collect(1), "after") == [(3, 0)]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_triton_python_model_streams_through_its_response_sender(
    stream: Stream, isolation: str
) -> None:
    for count in (0, 1, 4):
        data = np.array([count], dtype=np.int32)
        tensor = grpcclient.InferInput("IN", [1], "INT32")
        tensor.set_data_from_numpy(data)
        stream.client.async_stream_infer(
            f"square_{isolation}", [tensor], request_id=str(count), enable_empty_final_response=True
        )
    seen = stream.collect(3)
    for count in (0, 1, 4):
        answers = [r for rid, r, _ in seen if rid == str(count) and r.as_numpy("OUT") is not None]
        assert [int(r.as_numpy("OUT")[0]) for r in answers] == [count] * count


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_batching_decoupled_model_answers_each_request_of_a_batch(
    stream: Stream, isolation: str
) -> None:
    for n in range(4):
        data = np.array([[n, 10 * n]], dtype=np.int32)
        tensor = grpcclient.InferInput("IN", [1, 2], "INT32")
        tensor.set_data_from_numpy(data)
        stream.client.async_stream_infer(
            f"double_{isolation}", [tensor], request_id=str(n), enable_empty_final_response=True
        )
    seen = stream.collect(4)
    for n in range(4):
        (answer,) = [r for rid, r, final in seen if rid == str(n) and not final]
        assert answer.as_numpy("OUT").tolist() == [[2 * n, 20 * n]]
    together = [int(r.as_numpy("TOGETHER")[0, 0]) for _, r, final in seen if not final]
    assert max(together) > 1  # they were batched


def test_unary_infer_of_a_decoupled_model_is_triton_s_error(server: RunningServer) -> None:
    data = np.array([1, 2], dtype=np.int32)
    grpc_input = grpcclient.InferInput("IN", [2], "INT32")
    grpc_input.set_data_from_numpy(data)
    grpc_client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as grpc_error:
        grpc_client.infer("repeat_none", [grpc_input])
    grpc_client.close()
    assert grpc_error.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "ModelInfer RPC doesn't support models with decoupled transaction policy" in str(
        grpc_error.value
    )
    http_input = httpclient.InferInput("IN", [2], "INT32")
    http_input.set_data_from_numpy(data)
    http_client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException) as http_error:
        http_client.infer("repeat_none", [http_input])
    http_client.close()
    assert http_error.value.status() == "501"
    assert "HTTP end point doesn't support models with decoupled transaction policy" in str(
        http_error.value
    )


def cancel_after_first_response(server: RunningServer, model: str, *ids: str) -> None:
    """Send requests on a stream of their own; cancel it once the first one answered."""
    opened = Stream(server)
    for request_id in ids:
        opened.send(model, [1], request_id)
    first, error = opened.results.get(timeout=60)
    assert error is None and first.get_response().id == ids[0]
    opened.close(cancel=True)


def wait_for_line(marker: Path, line: str) -> list[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = marker.read_text().splitlines() if marker.exists() else []
        if line in lines:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{marker} never got {line!r}")


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_cancelling_the_stream_is_seen_by_the_model_and_empties_the_queue(
    server: RunningServer, repository: Path, isolation: str
) -> None:
    model = f"cancel_{isolation}"
    marker = repository / f"{model}.seen"
    # `queued` waits behind `long` for the model's one instance when the stream is cancelled.
    cancel_after_first_response(server, model, "long", "queued")
    wait_for_line(marker, "long cancelled=True delivered=False")
    # The instance is free again; had `queued` stayed in the queue, it would run before this.
    cancel_after_first_response(server, model, "probe")
    lines = wait_for_line(marker, "probe cancelled=True delivered=False")
    assert [line for line in lines if line.startswith("start")] == ["start long", "start probe"]


def test_statistics_count_a_decoupled_request_once(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    model = "repeat_async_process"
    before = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    opened = Stream(server)
    for n in range(3):
        opened.send(model, [1, 2, 3, 4], f"s{n}")
    opened.collect(3)
    opened.close()
    after = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    success = after["inference_stats"]["success"]
    previous = before["inference_stats"].get("success", {}).get("count", 0)
    assert int(success["count"]) - int(previous) == 3


def test_a_backend_that_cannot_stream_refuses_a_decoupled_model(
    tmp_path: Path, model_repository: Path
) -> None:
    folder = tmp_path / "simple_decoupled"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(
        (model_repository / "simple" / "1" / "model.onnx").read_bytes()
    )
    config = (model_repository / "simple" / "config.pbtxt").read_text()
    config = config.replace('name: "simple"', 'name: "simple_decoupled"')
    (folder / "config.pbtxt").write_text(
        config + "\nmodel_transaction_policy { decoupled: true }\n"
    )
    for flags in ((), ("--no-auto-complete-config",)):
        with running_server(tmp_path, *flags) as running:
            client = httpclient.InferenceServerClient(running.http_url)
            assert not client.is_model_ready("simple_decoupled")
            index = client.get_model_repository_index()
            reason = next(m["reason"] for m in index if m["name"] == "simple_decoupled")
            assert "decoupled" in reason and "onnxruntime" in reason


def test_bad_requests_for_a_decoupled_model_are_answered_in_stream(stream: Stream) -> None:
    wrong_type = grpcclient.InferInput("IN", [2], "FP32")
    wrong_type.set_data_from_numpy(np.array([1, 2], dtype=np.float32))
    stream.client.async_stream_infer("repeat_none", [wrong_type], request_id="fp32")
    values = grpcclient.InferInput("IN", [2], "INT32")
    values.set_data_from_numpy(np.array([1, 2], dtype=np.int32))
    unknown_output = [grpcclient.InferRequestedOutput("NOPE")]
    stream.client.async_stream_infer(
        "repeat_none", [values], outputs=unknown_output, request_id="nope"
    )
    stream.client.async_stream_infer("no_such_model", [values], request_id="missing")
    messages = [message for message, _, _ in stream.collect(3)]
    assert any("NOPE" in m for m in messages)
    assert any("FP32" in m or "datatype" in m for m in messages)
    assert any("unknown model" in m for m in messages)
    stream.send("repeat_none", [5], "still-open")
    assert outputs(stream.collect(1), "still-open") == [(5, 0)]


def test_requested_outputs_apply_to_each_response(stream: Stream) -> None:
    values = grpcclient.InferInput("IN", [3], "INT32")
    values.set_data_from_numpy(np.array([4, 5, 6], dtype=np.int32))
    stream.client.async_stream_infer(
        "repeat_process",
        [values],
        outputs=[grpcclient.InferRequestedOutput("IDX")],
        request_id="idx-only",
        enable_empty_final_response=True,
    )
    seen = stream.collect(1)
    answered = [result for _, result, final in seen if not final]
    assert [int(r.as_numpy("IDX")[0]) for r in answered] == [0, 1, 2]
    assert all(r.as_numpy("OUT") is None for r in answered)


def test_a_classification_asked_of_a_stream_applies_to_each_response(stream: Stream) -> None:
    # Such a response is changed before it is sent: it takes the stream's own path, not the
    # one that encodes a response as the model sent it in the callback that delivers it.
    values = grpcclient.InferInput("IN", [3], "INT32")
    values.set_data_from_numpy(np.array([4, 5, 6], dtype=np.int32))
    stream.client.async_stream_infer(
        "repeat_none",
        [values],
        outputs=[grpcclient.InferRequestedOutput("OUT", class_count=1)],
        request_id="top-1",
        enable_empty_final_response=True,
    )
    seen = stream.collect(1)
    answered = [result.as_numpy("OUT") for _, result, final in seen if not final]
    assert [a.tolist() for a in answered] == [[b"4:0"], [b"5:0"], [b"6:0"]]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_an_output_reshape_applies_to_each_streamed_response(
    stream: Stream, isolation: str
) -> None:
    # As a classification: changed before it is sent, so not encoded as the model sent it.
    stream.send(f"repeat_reshaped_{isolation}", [4, 5, 6], "reshaped")
    seen = stream.collect(1)
    answered = [result.as_numpy("OUT") for _, result, final in seen if not final]
    assert [a.tolist() for a in answered] == [[[4]], [[5]], [[6]]]


# Triton's own example models, when a checkout of triton-inference-server/python_backend is
# named (they are not part of this repository): copied unchanged into a repository made here.
TRITON_PYTHON_BACKEND = os.environ.get("INFERD_TRITON_PYTHON_BACKEND", "")


@pytest.mark.skipif(
    not TRITON_PYTHON_BACKEND, reason="INFERD_TRITON_PYTHON_BACKEND names no checkout"
)
@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_triton_s_decoupled_examples_run_unchanged(tmp_path: Path, isolation: str) -> None:
    examples = Path(TRITON_PYTHON_BACKEND) / "examples" / "decoupled"
    for model in ("repeat", "square"):
        folder = tmp_path / f"{model}_int32"
        (folder / "1").mkdir(parents=True)
        shutil.copy(examples / f"{model}_model.py", folder / "1" / "model.py")
        config = (examples / f"{model}_config.pbtxt").read_text()
        isolated = f'parameters {{ key: "isolation", value: {{ string_value: "{isolation}" }} }}'
        (folder / "config.pbtxt").write_text(f"{config}\n{isolated}\n")
    with running_server(tmp_path) as running:
        opened = Stream(running)
        # repeat_int32: one response per element of IN, DELAY ms apart; execute returns after
        # WAIT ms, before the last ones are sent.
        inputs = []
        for name, data in (("IN", [4, 2, 0, 1]), ("DELAY", [1, 2, 3, 4]), ("WAIT", [5])):
            datatype = "INT32" if name == "IN" else "UINT32"
            array = np.array(data, dtype=np.int32 if name == "IN" else np.uint32)
            tensor = grpcclient.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        opened.client.async_stream_infer("repeat_int32", inputs, request_id="repeat")
        seen = [opened.results.get(timeout=60) for _ in range(4)]
        assert [int(r.as_numpy("OUT")[0]) for r, _ in seen] == [4, 2, 0, 1]
        assert [int(r.as_numpy("IDX")[0]) for r, _ in seen] == [0, 1, 2, 3]
        for count in (3, 1):
            opened.send("square_int32", [count], f"square-{count}", empty_final=False)
        squares = [opened.results.get(timeout=60)[0] for _ in range(4)]
        assert sorted(int(r.as_numpy("OUT")[0]) for r in squares) == [1, 3, 3, 3]
        opened.close()
