"""A running unary request is seen cancelled by its model: a gRPC call past its deadline, a
cancelled gRPC call and an HTTP client that disconnects each set the flag that `InferdModel`'s
`request.is_cancelled()` and Triton's shim read, in both isolation modes; an HTTP client that
disconnects while its request is queued takes it out of the queue. Each counts as cancelled."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually, metric

# Notes each request it starts; a request of IN != 0 runs until its client cancels it (30 s at
# most). OUT tells whether the model saw it cancelled.
WATCH = """
import time
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]

    def note(self, line):
        with open(self.marker, "a") as marker:
            marker.write(line + "\\n")

    def execute(self, batch):
        request = batch.requests[0]
        self.note(f"start {request.id}")
        deadline = time.monotonic() + 30
        while request.inputs["IN"][0] and time.monotonic() < deadline:
            if request.is_cancelled():
                self.note(f"cancelled {request.id}")
                break
            time.sleep(0.01)
        return {"OUT": np.array([int(request.is_cancelled())], np.int32)}
"""

TRITON_WATCH = """
import json
import time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.marker = config["parameters"]["marker"]["string_value"]

    def note(self, line):
        with open(self.marker, "a") as marker:
            marker.write(line + "\\n")

    def execute(self, requests):
        request = requests[0]
        self.note(f"start {request.request_id()}")
        value = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0]
        deadline = time.monotonic() + 30
        while value and time.monotonic() < deadline:
            if request.is_cancelled():
                self.note(f"cancelled {request.request_id()}")
                break
            time.sleep(0.01)
        out = np.array([int(request.is_cancelled())], np.int32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)])]
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters [
  {{ key: "marker", value: {{ string_value: "{marker}" }} }},
  {{ key: "isolation", value: {{ string_value: "{isolation}" }} }}
]
"""

MODELS = {
    "watch": (WATCH, "none"),
    "watch_process": (WATCH, "process"),
    "triton_watch": (TRITON_WATCH, "none"),
    "triton_watch_process": (TRITON_WATCH, "process"),
}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unary_cancellation")
    for name, (code, isolation) in MODELS.items():
        config = CONFIG.format(name=name, marker=root / f"{name}.seen", isolation=isolation)
        write(root, name, code, config)
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


def seen(repository: Path, model: str) -> list[str]:
    marker = repository / f"{model}.seen"
    return marker.read_text().splitlines() if marker.exists() else []


def grpc_input(value: int) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([value], np.int32))
    return tensor


def http_infer(server: RunningServer, model: str, value: int, request_id: str) -> int:
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([value], np.int32))
    result = client.infer(model, [tensor], request_id=request_id)
    return int(result.as_numpy("OUT")[0])


def infer_bytes(model: str, request_id: str, value: int = 1, chunked: bool = False) -> bytes:
    """An HTTP infer of IN = `value`; `chunked` frames its body so (the ASGI path, not the
    express lane)."""
    body = json.dumps(
        {
            "id": request_id,
            "inputs": [{"name": "IN", "shape": [1], "datatype": "INT32", "data": [value]}],
        }
    ).encode()
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()
    return head + (b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if chunked else body)


def disconnecting_infer(server: RunningServer, model: str, request_id: str) -> socket.socket:
    """An HTTP infer of IN = 1 sent on a raw socket, whose caller closes it to go away."""
    connection = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    connection.sendall(infer_bytes(model, request_id))
    return connection


@pytest.mark.parametrize("model", list(MODELS))
def test_a_grpc_call_past_its_deadline_is_cancelled_for_its_running_model(
    server: RunningServer, repository: Path, model: str
) -> None:
    cancelled = metric(server, "inferd_inference_request_cancelled", model)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException, match="Deadline"):
        client.infer(model, [grpc_input(1)], request_id="deadline", client_timeout=1)
    eventually(lambda: "cancelled deadline" in seen(repository, model))
    eventually(lambda: metric(server, "inferd_inference_request_cancelled", model) > cancelled)
    # A request nobody cancels is not seen cancelled, and the instance serves again.
    assert http_infer(server, model, 0, "after") == 0


def test_a_cancelled_grpc_call_is_cancelled_for_its_running_model(
    server: RunningServer, repository: Path
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    answers: list[object] = []
    call = client.async_infer(
        "watch", [grpc_input(1)], lambda result, error: answers.append(error), request_id="call"
    )
    eventually(lambda: "start call" in seen(repository, "watch"))
    call.cancel()
    eventually(lambda: "cancelled call" in seen(repository, "watch"))
    assert http_infer(server, "watch", 0, "after-call") == 0


@pytest.mark.parametrize("model", ["watch", "triton_watch_process"])
def test_an_http_client_that_disconnects_cancels_its_running_request(
    server: RunningServer, repository: Path, model: str
) -> None:
    cancelled = metric(server, "inferd_inference_request_cancelled", model)
    connection = disconnecting_infer(server, model, "http-running")
    eventually(lambda: "start http-running" in seen(repository, model))
    connection.close()
    eventually(lambda: "cancelled http-running" in seen(repository, model))
    eventually(lambda: metric(server, "inferd_inference_request_cancelled", model) > cancelled)
    assert metric(server, "nv_inference_pending_request_count", model) == 0
    assert http_infer(server, model, 0, "after-http") == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["express", "asgi"])
def test_a_client_that_disconnects_with_requests_pipelined_cancels_its_running_one(
    server: RunningServer, repository: Path, chunked: bool
) -> None:
    """Three requests sent in one write: a quick one (on the express lane, or chunked the ASGI
    way), a running one, a health check. uvicorn marks only a connection's newest request
    disconnected when its client goes: the running one, the second, must be seen gone too
    (else it runs on, and its answer is written to the closed connection: under uvloop an
    error, logged with a traceback)."""
    running = f"pipelined-{'asgi' if chunked else 'express'}"
    connection = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    connection.sendall(
        infer_bytes("watch", f"{running}-quick", value=0, chunked=chunked)
        + infer_bytes("watch", running)
        + b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    eventually(lambda: f"start {running}" in seen(repository, "watch"))
    connection.close()
    eventually(lambda: f"cancelled {running}" in seen(repository, "watch"))
    assert http_infer(server, "watch", 0, f"after-{running}") == 0
    assert "unhandled error" not in server.log_text()


def test_an_http_client_that_disconnects_takes_its_request_out_of_the_queue(
    server: RunningServer, repository: Path
) -> None:
    cancelled = metric(server, "inferd_inference_request_cancelled", "watch")
    running = disconnecting_infer(server, "watch", "http-long")
    eventually(lambda: "start http-long" in seen(repository, "watch"))
    queued = disconnecting_infer(server, "watch", "http-queued")
    eventually(lambda: metric(server, "nv_inference_pending_request_count", "watch") == 1)
    queued.close()  # goes away while its request waits for the one instance
    eventually(lambda: metric(server, "nv_inference_pending_request_count", "watch") == 0)
    eventually(lambda: metric(server, "inferd_inference_request_cancelled", "watch") > cancelled)
    assert "cancelled http-long" not in seen(repository, "watch")  # still running

    running.close()
    eventually(lambda: "cancelled http-long" in seen(repository, "watch"))
    assert http_infer(server, "watch", 0, "after-queue") == 0
    assert "start http-queued" not in seen(repository, "watch")
    assert metric(server, "inferd_inference_request_cancelled", "watch") == cancelled + 2
