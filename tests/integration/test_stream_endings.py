"""Every way a decoupled request's stream ends on the server's side also ends it for the model,
in the server's process and in a worker process: the model's sender drops what it sends from
then on, so nothing of the request stays behind (in a worker process: its entry in the
server's `StreamingWorker` and its sink in the worker go with it). The endings: the model's
final response, a failing `execute`, the client's cancellation (a gRPC stream cancelled, an
SSE client that disconnects), and an iterative request that the server fails because it
idled out between two steps; and in a worker process, the death of the worker, which ends
every stream it had open with an error instead of leaving its client waiting.

The server's own endings, over gRPC and SSE: a request past its queue timeout (a dynamic
batcher's queue, an iterative model's backlog) and a stream open when its model is unloaded
end with UNAVAILABLE and a message that says so, and nothing of them stays (the next request
runs, nothing is pending or in flight; the unloaded model loads and serves again)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually, metric
from tests.integration.test_decoupled import ISOLATIONS, Stream

# Each request gets a prober: a thread that sends on the request's sender until a send is
# dropped, and logs whether that happened (the request ended for the model too) before its
# deadline. PROBED holds what the models share: `execute` decides how the request ends.
PROBED = """
import threading
import time
import numpy as np

class Probed:
    def initialize(self, context):
        self.marker = context.parameters["marker"]
        self.lock = threading.Lock()
        self.probed = set()

    def log(self, line):
        with self.lock, open(self.marker, "a") as marker:
            marker.write(line + "\\n")

    def probe(self, request):
        if request.id in self.probed:  # the later steps of an iterative request
            return
        self.probed.add(request.id)
        threading.Thread(target=self.send_until_dropped, args=(request.id, request.sender)).start()
        self.log(f"start {request.id}")

    def send_until_dropped(self, request_id, sender):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not sender.send({"OUT": np.array([7], np.int32)}):
                self.log(f"{request_id} dropped")
                return
            time.sleep(0.02)
        self.log(f"{request_id} still open")
"""

# IN = 0: the final response; 1: `execute` fails; 2: no final response (the stream stays
# open until its client cancels it); 3: the process dies.
ENDINGS = (
    PROBED
    + """
import os
import signal

class InferdModel(Probed):
    def execute(self, batch):
        for request in batch.requests:
            self.probe(request)
            ending = int(request.inputs["IN"][0])
            if ending == 0:
                request.sender.send({"OUT": np.array([0], np.int32)}, final=True)
            elif ending == 1:
                raise RuntimeError("failing on purpose")
            elif ending == 3:
                os.kill(os.getpid(), signal.SIGKILL)
"""
)

# Iterative, one step at a time at least 200 ms long: IN = 0 finishes at its first step, any
# other value never does. A request's steps batch only with requests of its shape, so a
# request whose next step waits behind another shape's idles out (1 ms).
IDLING = (
    PROBED
    + """
class InferdModel(Probed):
    def execute(self, batch):
        time.sleep(0.2)
        for request in batch.requests:
            self.probe(request)
            if request.inputs["IN"].any():
                request.reschedule()
            else:
                request.sender.close()
"""
)

# Holds the one instance while IN is non-zero, until the file `<marker>.<request id>.release`
# exists (30 s at most), then answers with its final response.
HOLDING = (
    PROBED
    + """
import os

class InferdModel(Probed):
    def execute(self, batch):
        for request in batch.requests:
            self.log(f"start {request.id}")
            release = f"{self.marker}.{request.id}.release"
            deadline = time.monotonic() + 30
            while request.inputs["IN"].any() and not os.path.exists(release):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            request.sender.send({"OUT": np.zeros((1, 1), np.int32)}, final=True)
"""
)

CONFIG = """
name: "{name}"
backend: "python"
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ -1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
parameters [
  {{ key: "isolation", value: {{ string_value: "{isolation}" }} }},
  {{ key: "marker", value: {{ string_value: "{marker}" }} }}{parameters}
]
{scheduling}
"""

ONE_INSTANCE = """
max_batch_size: 0
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

ITERATIVE = """
max_batch_size: 2
sequence_batching { iterative_sequence: true  max_sequence_idle_microseconds: 1000 }
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

# A request may shorten its wait in the queue (its `timeout` parameter, microseconds).
QUEUED = """
max_batch_size: 1
dynamic_batching { default_queue_policy { allow_timeout_override: true } }
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

# One slot in the running batch; a request may shorten its wait for it (`timeout`).
ONE_SLOT = """
max_batch_size: 0
sequence_batching { iterative_sequence: true }
instance_group [ { count: 1, kind: KIND_CPU } ]
"""
ADMISSION = """,
  { key: "inferd.admission.allow_timeout_override", value: { string_value: "true" } }"""

# name, code, scheduling, extra parameters: in the server whose repository it polls.
POLLED = (
    ("endings", ENDINGS, ONE_INSTANCE, ""),
    ("idling", IDLING, ITERATIVE, ""),
    ("queued", HOLDING, QUEUED, ""),
    ("admitted", IDLING, ONE_SLOT, ADMISSION),
)
# ... in the server that loads and unloads models when asked (explicit model control).
CONTROLLED = (
    ("unloaded", ENDINGS, ONE_INSTANCE, ""),
    ("unloaded_steps", IDLING, ONE_SLOT, ""),
)


def write_models(root: Path, models: tuple[tuple[str, str, str, str], ...]) -> None:
    """Each model of `models` in each isolation mode, as `<name>_<isolation>`."""
    for isolation in ISOLATIONS:
        for base, code, scheduling, parameters in models:
            name = f"{base}_{isolation}"
            marker = root / f"{name}.seen"
            config = CONFIG.format(
                name=name,
                isolation=isolation,
                marker=marker,
                scheduling=scheduling,
                parameters=parameters,
            )
            write(root, name, code, config)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream_endings")
    write_models(root, POLLED)
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


def logged(marker: Path, start: str) -> str:
    """The first line the model logged that begins with `start`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = marker.read_text().splitlines() if marker.exists() else []
        found = [line for line in lines if line.startswith(start)]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"{marker} never got a line that begins with {start!r}")


def probed(marker: Path, request_id: str) -> str:
    """What the request's prober logged: '<id> dropped' or '<id> still open'."""
    return logged(marker, f"{request_id} ")


def send_in(
    stream: Stream, model: str, data: np.ndarray, request_id: str, timeout: int | None = None
) -> None:
    """A request of input `data`; `timeout`: its queue timeout (microseconds)."""
    tensor = grpcclient.InferInput("IN", list(data.shape), "INT32")
    tensor.set_data_from_numpy(data.astype(np.int32))
    stream.client.async_stream_infer(
        model, [tensor], request_id=request_id, enable_empty_final_response=True, timeout=timeout
    )


def send_row(stream: Stream, model: str, row: list[int], request_id: str) -> None:
    """A request of one row (batch size 1), for the batching iterative model."""
    send_in(stream, model, np.array([row]), request_id)


def ended(stream: Stream, request_id: str) -> str:
    """How the request's stream ended for its client: 'final', or the error's message."""
    while True:
        result, error = stream.results.get(timeout=60)
        if error is not None:
            return str(error.message())
        response = result.get_response()
        if response.id == request_id and response.parameters["triton_final_response"].bool_param:
            return "final"


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize(
    ("ending", "request_id", "seen"),
    [(0, "final", "final"), (1, "failed", "failing on purpose")],
)
def test_a_stream_that_ended_drops_what_the_model_still_sends(
    server: RunningServer,
    repository: Path,
    isolation: str,
    ending: int,
    request_id: str,
    seen: str,
) -> None:
    model = f"endings_{isolation}"
    stream = Stream(server)
    try:
        stream.send(model, [ending], request_id)
        assert seen in ended(stream, request_id)
    finally:
        stream.close()
    assert probed(repository / f"{model}.seen", request_id) == f"{request_id} dropped"


def cancel_grpc(server: RunningServer, model: str, marker: Path, request_id: str) -> None:
    """A gRPC stream cancelled (tritonclient's `stop_stream(cancel_requests=True)`) once its
    request answered."""
    stream = Stream(server)
    stream.send(model, [2], request_id)
    logged(marker, f"start {request_id}")
    _, error = stream.results.get(timeout=60)  # a probe's response: the stream is open
    assert error is None
    stream.close(cancel=True)


def cancel_sse(server: RunningServer, model: str, marker: Path, request_id: str) -> None:
    """A `generate_stream` whose client disconnects after the first event."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    body = json.dumps({"IN": [2], "id": request_id})
    connection.request("POST", f"/v2/models/{model}/generate_stream", body=body.encode())
    response = connection.getresponse()
    assert response.status == 200
    while not response.readline().startswith(b"data: "):
        pass
    response.close()
    connection.close()


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("cancel", [cancel_grpc, cancel_sse], ids=["grpc", "sse"])
def test_a_cancelled_stream_drops_what_the_model_still_sends(
    server: RunningServer,
    repository: Path,
    isolation: str,
    cancel: Callable[[RunningServer, str, Path, str], None],
) -> None:
    model = f"endings_{isolation}"
    marker = repository / f"{model}.seen"
    request_id = f"cancelled-{cancel.__name__}"
    cancel(server, model, marker, request_id)
    assert probed(marker, request_id) == f"{request_id} dropped"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_an_iterative_request_that_idled_out_drops_what_the_model_still_sends(
    server: RunningServer, repository: Path, isolation: str
) -> None:
    model = f"idling_{isolation}"
    marker = repository / f"{model}.seen"
    idling, other = Stream(server), Stream(server)
    try:
        send_row(idling, model, [1], "idling")
        logged(marker, "start idling")
        # Of another shape: its step runs alone, between two of `idling`'s steps.
        send_row(other, model, [0, 0], "other")
        assert ended(other, "other") == "final"
        # Its stream ends for the model as its reader leaves it, without a batch after it.
        assert "idled out between two steps" in ended(idling, "idling")
    finally:
        idling.close()
        other.close()
    assert probed(marker, "idling") == "idling dropped"


def test_a_worker_that_dies_ends_every_stream_it_had_open(
    server: RunningServer, repository: Path
) -> None:
    model = "endings_process"
    held, dying = Stream(server), Stream(server)
    try:
        held.send(model, [2], "held")
        logged(repository / f"{model}.seen", "start held")
        dying.send(model, [3], "dying")
        assert ended(dying, "dying") != "final"  # its batch failed, or its stream
        assert "stopped before answering" in ended(held, "held")
        dying.send(model, [0], "after")  # in a new worker
        assert ended(dying, "after") == "final"
    finally:
        held.close()
        dying.close()


# ---- ended by a queue timeout -------------------------------------------------------------

QUEUE_TIMEOUT = 100_000  # microseconds: the `timeout` of a request that waits behind a held one


def batched(model: str, values: list[int]) -> np.ndarray:
    """`values` as the model's IN: one row of a batch for the batching `queued` models."""
    return np.array([values] if model.startswith("queued") else values)


def timed_out_grpc(server: RunningServer, model: str, request_id: str) -> str:
    """How a gRPC stream's request with a short queue timeout ended for its client."""
    stream = Stream(server)
    try:
        send_in(stream, model, batched(model, [0]), request_id, timeout=QUEUE_TIMEOUT)
        return ended(stream, request_id)
    finally:
        stream.close()


def timed_out_sse(server: RunningServer, model: str, request_id: str) -> str:
    """How a `generate_stream` request with a short queue timeout ended: status and error."""
    body = {"IN": [0], "id": request_id, "parameters": {"timeout": QUEUE_TIMEOUT}}
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    try:
        connection.request("POST", f"/v2/models/{model}/generate_stream", json.dumps(body))
        response = connection.getresponse()
        return f"{response.status} {json.loads(response.read())['error']}"
    finally:
        connection.close()


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("base", ["queued", "admitted"], ids=["dynamic", "iterative"])
@pytest.mark.parametrize("time_out", [timed_out_grpc, timed_out_sse], ids=["grpc", "sse"])
def test_a_stream_whose_request_times_out_in_the_queue_ends_unavailable(
    server: RunningServer,
    repository: Path,
    isolation: str,
    base: str,
    time_out: Callable[[RunningServer, str, str], str],
) -> None:
    model = f"{base}_{isolation}"
    marker = repository / f"{model}.seen"
    holder_id, timed_id = f"holder-{time_out.__name__}", f"timed-{time_out.__name__}"
    holder = Stream(server)
    try:
        # It holds the one instance (`queued`) or the one slot of the running batch.
        send_in(holder, model, batched(model, [1]), holder_id)
        logged(marker, f"start {holder_id}")
        assert metric(server, "inferd_inference_in_flight_request_count", model) >= 1
        outcome = time_out(server, model, timed_id)
        assert "request timed out in the queue before it could be scheduled" in outcome
        if time_out is timed_out_sse:  # refused before its first event: UNAVAILABLE's status
            assert outcome.startswith("503 ")
        if base == "queued":
            Path(f"{marker}.{holder_id}.release").touch()
            assert ended(holder, holder_id) == "final"
    finally:
        holder.close(cancel=True)  # the iterative holder never ends by itself
    # Nothing of either request stays: the next runs at once, nothing waits or is in flight.
    after = Stream(server)
    try:
        send_in(after, model, batched(model, [0]), f"after-{timed_id}")
        assert ended(after, f"after-{timed_id}") == "final"
    finally:
        after.close()
    for gauge in ("nv_inference_pending_request_count", "inferd_inference_in_flight_request_count"):
        eventually(lambda gauge=gauge: metric(server, gauge, model) == 0)
    assert f"start {timed_id}" not in marker.read_text()  # it never reached the model


# ---- ended by unloading the model ---------------------------------------------------------


# What keeps a request's stream open: `unloaded`'s model sends on from a thread of its own
# after `execute`, with no final response; `unloaded_steps` hands its request back each step.
OPEN = {"unloaded": [2], "unloaded_steps": [1]}


@pytest.fixture(scope="module")
def controlled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    """A server in explicit model control, its repository's models loaded; the repository."""
    root = tmp_path_factory.mktemp("stream_endings_unloaded")
    write_models(root, CONTROLLED)
    names = [f"{base}_{isolation}" for base, *_ in CONTROLLED for isolation in ISOLATIONS]
    loads = [arg for name in names for arg in ("--load-model", name)]
    with running_server(root, "--model-control-mode", "explicit", *loads) as running:
        yield running, root


def unloaded_grpc(
    server: RunningServer, model: str, request_id: str, unload: Callable[[], None]
) -> str:
    """How a gRPC stream's request open when `unload` ran ended for its client."""
    stream = Stream(server)
    try:
        stream.send(model, OPEN[model.rsplit("_", 1)[0]], request_id)
        _, error = stream.results.get(timeout=60)  # a response: the stream is open
        assert error is None
        unload()
        return ended(stream, request_id)
    finally:
        stream.close()


def unloaded_sse(
    server: RunningServer, model: str, request_id: str, unload: Callable[[], None]
) -> str:
    """How a `generate_stream` open when `unload` ran ended: its last event's error."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    try:
        body = json.dumps({"IN": OPEN[model.rsplit("_", 1)[0]], "id": request_id})
        connection.request("POST", f"/v2/models/{model}/generate_stream", body)
        response = connection.getresponse()
        assert response.status == 200
        events = (json.loads(line[6:]) for line in response if line.startswith(b"data: "))
        assert "error" not in next(events)  # a response: the stream is open
        unload()
        errors = [event["error"] for event in events if "error" in event]
        assert len(errors) == 1  # the last event: the stream ended after it
        return str(errors[0])
    finally:
        connection.close()


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("base", ["unloaded", "unloaded_steps"], ids=["decoupled", "iterative"])
@pytest.mark.parametrize("unloaded", [unloaded_grpc, unloaded_sse], ids=["grpc", "sse"])
def test_a_stream_open_when_its_model_is_unloaded_ends_unavailable(
    controlled: tuple[RunningServer, Path],
    isolation: str,
    base: str,
    unloaded: Callable[[RunningServer, str, str, Callable[[], None]], str],
) -> None:
    server, root = controlled
    model = f"{base}_{isolation}"
    request_id = f"open-{unloaded.__name__}"
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        message = unloaded(server, model, request_id, lambda: client.unload_model(model))
        assert "unloaded" in message
        assert not message.lower().startswith("internal")
        if isolation == "none":  # a worker process went with its model
            assert probed(root / f"{model}.seen", request_id) == f"{request_id} dropped"
        client.load_model(model)
        after = Stream(server)
        try:
            after.send(model, [0], f"after-{request_id}")
            assert ended(after, f"after-{request_id}") == "final"
        finally:
            after.close()
    finally:
        client.close()
