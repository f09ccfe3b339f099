"""A slow reader of a fast streaming model holds the model back instead of growing the
server's memory: a decoupled model's sends block once its stream has `MAX_UNREAD` responses
unread, and an iterative model runs no step of a request whose reader is behind, while the
other requests of its running batch go on. Read over `generate_stream` (SSE), whose reader
stops reading while the test sleeps, and over gRPC `ModelStreamInfer` (tritonclient), whose
reader stops while the test holds its callback: a gRPC call's responses wait in a bounded
outbox, so its requests stop taking responses from their channels. A model that is not
decoupled answers a gRPC stream's requests in order: while the client does not read, the
stream stops reading its requests once `ANSWERS_WAITING` answers wait."""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from inferd.core.responses import MAX_UNREAD
from inferd.frontends.grpc.stream import ANSWERS_WAITING, OUTBOX_LIMIT, STREAM_WINDOW
from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually, rss_kib

PAYLOAD = 256 * 1024  # bytes of text per response

# Sends COUNT responses of PAYLOAD characters as fast as it can, from the instance's thread;
# logs how many it has sent so far.
FLOOD = """
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]

    def execute(self, batch):
        request = batch.requests[0]
        count = int(request.inputs["COUNT"][0])
        for index in range(count):
            text = str(index).encode().ljust({payload}, b".")
            last = index == count - 1
            request.sender.send({{"TEXT": np.array([text], dtype=object)}}, final=last)
            with open(self.marker, "w") as marker:
                marker.write(str(index + 1))
"""

FLOOD_CONFIG = """
name: "flood"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "COUNT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] }} ]
parameters [ {{ key: "marker", value: {{ string_value: "{marker}" }} }} ]
"""

# One response of PAYLOAD characters per step; a request runs COUNT steps. Logs each step's
# request ids.
STEPS = """
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]
        self.made = {{}}

    def execute(self, batch):
        with open(self.marker, "a") as marker:
            for request in batch.requests:
                key = request.parameters["sequence_id"]
                made = 0 if request.parameters["sequence_start"] else self.made.pop(key)
                marker.write(f"{{request.id}}\\n")
                text = str(made).encode().ljust({payload}, b".")
                last = made + 1 == int(request.inputs["COUNT"].reshape(-1)[0])
                if not last:
                    self.made[key] = made + 1
                    request.reschedule()
                request.sender.send({{"TEXT": np.array([text], dtype=object)}}, final=last)
"""

STEPS_CONFIG = """
name: "steps"
backend: "python"
max_batch_size: 2
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "COUNT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] }} ]
sequence_batching {{ iterative_sequence: true, max_sequence_idle_microseconds: 1000000 }}
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters [ {{ key: "marker", value: {{ string_value: "{marker}" }} }} ]
"""

# Answers each request with PAYLOAD characters that start with its COUNT; logs how many
# requests it has answered so far.
ECHO = """
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]
        self.answered = 0

    def execute(self, batch):
        request = batch.requests[0]
        text = str(int(request.inputs["COUNT"][0])).encode().ljust({payload}, b".")
        self.answered += 1
        with open(self.marker, "w") as marker:
            marker.write(str(self.answered))
        return [{{"TEXT": np.array([text], dtype=object)}}]
"""

ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
input [ {{ name: "COUNT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] }} ]
parameters [ {{ key: "marker", value: {{ string_value: "{marker}" }} }} ]
"""

# Responses that may sit between the stream and the reader beyond the channel: the kernel's
# socket buffers on both ends (a few MiB on loopback) and one in each layer on the way.
IN_FLIGHT = 64


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("backpressure")
    write(root, "flood", FLOOD.format(payload=PAYLOAD), FLOOD_CONFIG.format(marker=root / "sent"))
    write(root, "steps", STEPS.format(payload=PAYLOAD), STEPS_CONFIG.format(marker=root / "ran"))
    write(root, "echo", ECHO.format(payload=PAYLOAD), ECHO_CONFIG.format(marker=root / "echoed"))
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


def events(server: RunningServer, model: str, count: int, request_id: str) -> Iterator[str]:
    """The TEXT of each event of a `generate_stream` request, read as the caller iterates."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    body = json.dumps({"COUNT": count, "id": request_id})
    connection.request("POST", f"/v2/models/{model}/generate_stream", body)
    answer = connection.getresponse()
    assert answer.status == 200
    for line in answer:
        if line.startswith(b"data: "):
            event = json.loads(line.removeprefix(b"data: "))
            assert "error" not in event, event
            yield event["TEXT"]
    connection.close()


def index_of(text: str) -> int:
    assert len(text) == PAYLOAD
    return int(text.rstrip("."))


def test_a_slow_reader_holds_a_decoupled_model_back(
    server: RunningServer, repository: Path
) -> None:
    sent = repository / "sent"
    count = 600  # 150 MiB if the server kept every unread response
    before = rss_kib(server)
    stream = events(server, "flood", count, "flood")
    assert index_of(next(stream)) == 0
    time.sleep(1.5)  # the reader stalls; an unbounded stream would take every response now
    eventually(lambda: sent.exists())
    assert int(sent.read_text()) <= 1 + MAX_UNREAD + IN_FLIGHT
    assert rss_kib(server) - before < 64 * 1024
    assert [index_of(text) for text in stream] == list(range(1, count))


def test_an_iterative_request_whose_reader_is_behind_waits_alone(
    server: RunningServer, repository: Path
) -> None:
    ran = repository / "ran"
    count = 400

    def steps_of(request_id: str) -> int:
        return ran.read_text().split().count(request_id) if ran.exists() else 0

    slow = events(server, "steps", count, "slow")
    assert index_of(next(slow)) == 0
    # While `slow` is not read, another request runs its steps in the same running batch.
    fast = [index_of(text) for text in events(server, "steps", 20, "fast")]
    assert fast == list(range(20))
    time.sleep(2.5)  # past max_sequence_idle_microseconds: waiting for its reader is no idling
    assert steps_of("slow") <= 1 + MAX_UNREAD + IN_FLIGHT
    assert [index_of(text) for text in slow] == list(range(1, count))
    assert steps_of("slow") == count


def count_input(count: int) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("COUNT", [1], "INT32")
    tensor.set_data_from_numpy(np.array([count], np.int32))
    return tensor


def test_a_slow_grpc_reader_holds_a_decoupled_model_back(
    server: RunningServer, repository: Path
) -> None:
    sent = repository / "sent"
    count = 600  # 150 MiB if the server kept every unread response
    texts: queue.Queue[str | Exception] = queue.Queue()
    reading = threading.Event()

    def callback(result: grpcclient.InferResult | None, error: Exception | None) -> None:
        texts.put(error if result is None else result.as_numpy("TEXT")[0].decode())
        reading.wait(60)  # tritonclient reads the stream's next response after this returns

    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=callback)
    try:
        before = rss_kib(server)
        client.async_stream_infer("flood", [count_input(count)], request_id="flood")
        first = texts.get(timeout=60)
        assert isinstance(first, str), first
        assert index_of(first) == 0
        time.sleep(1.5)  # the reader stalls; an unbounded stream would take every response now
        eventually(lambda: sent.exists())
        assert int(sent.read_text()) <= 1 + MAX_UNREAD + OUTBOX_LIMIT + IN_FLIGHT
        assert rss_kib(server) - before < 64 * 1024
        reading.set()
        rest = [texts.get(timeout=60) for _ in range(count - 1)]
        assert [index_of(text) for text in rest] == list(range(1, count))  # type: ignore[arg-type]
    finally:
        reading.set()
        client.stop_stream()  # returns once the server ended the call: its end got through
        client.close()


def test_many_requests_behind_a_slow_reader_all_finish(
    server: RunningServer, repository: Path
) -> None:
    # More responses than the outbox holds, from more requests than the stream's window; the
    # reader is slow throughout. Every response arrives, in order per request.
    requests, count = 80, 3
    answers: queue.Queue[tuple[str, str] | Exception] = queue.Queue()

    def callback(result: grpcclient.InferResult | None, error: Exception | None) -> None:
        if result is None:
            answers.put(error if error is not None else RuntimeError("no result"))
            return
        answers.put((result.get_response().id, result.as_numpy("TEXT")[0].decode()))
        time.sleep(0.002)

    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=callback)
    try:
        for index in range(requests):
            client.async_stream_infer("flood", [count_input(count)], request_id=str(index))
        received: dict[str, list[int]] = {str(index): [] for index in range(requests)}
        for _ in range(requests * count):
            answer = answers.get(timeout=60)
            assert isinstance(answer, tuple), answer
            received[answer[0]].append(index_of(answer[1]))
        assert all(indexes == list(range(count)) for indexes in received.values())
    finally:
        client.stop_stream()
        client.close()


def settled(read: Callable[[], int]) -> int:
    """`read()` once it has stopped changing for a second (it only grows)."""
    last, still = read(), 0
    while still < 20:
        time.sleep(0.05)
        now = read()
        last, still = now, still + 1 if now == last else 0
    return last


def test_a_grpc_client_that_sends_many_and_does_not_read_is_held_back(
    server: RunningServer, repository: Path
) -> None:
    # A model that is not decoupled: its answers wait in the stream for their turn. Were the
    # stream to read every request, it would keep every answer (150 MiB) for the client.
    echoed = repository / "echoed"
    count = 600
    answers: queue.Queue[tuple[str, str] | Exception] = queue.Queue()
    reading = threading.Event()

    def callback(result: grpcclient.InferInput | None, error: Exception | None) -> None:
        if result is None:
            answers.put(error if error is not None else RuntimeError("no result"))
        else:
            answers.put((result.get_response().id, result.as_numpy("TEXT")[0].decode()))
        reading.wait(60)  # tritonclient reads the stream's next response after this returns

    def answered() -> int:
        return int(echoed.read_text() or 0) if echoed.exists() else 0

    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=callback)
    try:
        before = rss_kib(server)
        for index in range(count):
            client.async_stream_infer("echo", [count_input(index)], request_id=str(index))
        first = answers.get(timeout=60)
        assert first == ("0", "0".ljust(PAYLOAD, ".")), first
        # In the outbox, waiting, in the engine (answered meanwhile), one read but not yet
        # taken in, and in flight to the client.
        bound = OUTBOX_LIMIT + ANSWERS_WAITING + STREAM_WINDOW + 1 + IN_FLIGHT
        assert settled(answered) <= bound < count
        assert rss_kib(server) - before < 96 * 1024
        reading.set()
        rest = [answers.get(timeout=60) for _ in range(count - 1)]
        assert all(isinstance(answer, tuple) for answer in rest), rest
        assert [answer[0] for answer in rest] == [str(i) for i in range(1, count)]  # type: ignore[index]
        assert [index_of(answer[1]) for answer in rest] == list(range(1, count))  # type: ignore[index]
        assert answered() == count
    finally:
        reading.set()
        client.stop_stream()
        client.close()
