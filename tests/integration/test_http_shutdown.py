"""SIGTERM with a `generate_stream` in flight: the HTTP frontend gives it the whole grace
period, a fraction of a second included, as the gRPC frontend does; and a stream still running
when the grace expires ends as with any error, its response complete, with no failure logged.
A unary request still running then (infer by the express lane or the ASGI path, `generate`,
OpenAI completions and embeddings) is answered 503 with its endpoint's JSON error, its model
seeing it cancelled, and no failure logged either."""

from __future__ import annotations

import http.client
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.integration.model_files import write
from tests.integration.server import running_server
from tests.integration.test_generate import wait_for
from tests.integration.test_openai import ENDLESS_CONFIG

# Its first response at once; its final one 0.3 s after the test has sent SIGTERM (it
# creates the file `go` then).
MODEL = """
import threading
import time
from pathlib import Path

import numpy as np

GO = Path(__file__).parent / "go"


class InferdModel:
    def execute(self, batch):
        for request in batch.requests:
            threading.Thread(target=self.answer, args=(request.sender,)).start()

    def answer(self, sender):
        sender.send({"OUT": np.array([1], np.int32)})
        while not GO.exists():
            time.sleep(0.01)
        time.sleep(0.3)
        sender.send({"OUT": np.array([2], np.int32)}, final=True)
"""
CONFIG = """
name: "after_sigterm"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""


def test_sigterm_gives_a_stream_a_grace_under_a_second(tmp_path: Path) -> None:
    write(tmp_path, "after_sigterm", MODEL, CONFIG)
    with running_server(tmp_path, "--shutdown-grace-seconds", "0.9") as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        connection.request(
            "POST", "/v2/models/after_sigterm/generate_stream", body=json.dumps({"IN": 1})
        )
        answer = connection.getresponse()
        assert answer.status == 200
        assert answer.readline().startswith(b"data:")  # the first response: it runs
        server.process.send_signal(signal.SIGTERM)
        (tmp_path / "after_sigterm" / "1" / "go").touch()
        rest = answer.read()  # raises where the server cut the stream short
        connection.close()
        events = [json.loads(line[5:]) for line in rest.splitlines() if line.startswith(b"data:")]
        assert [event["OUT"] for event in events] == [2]
        assert server.process.wait(timeout=30) == 0


# Streams "z" every few milliseconds until its request is cancelled: it outlives any grace.
# Prompted "silent", it sends nothing; either way it creates the file `running` at once.
ENDLESS = """
import threading
import time
from pathlib import Path

import numpy as np

RUNNING = Path(__file__).parent / "running"


class InferdModel:
    def execute(self, batch):
        for request in batch.requests:
            silent = request.inputs["PROMPT"].reshape(-1)[0] == b"silent"
            threading.Thread(target=self.generate, args=(request.sender, silent)).start()

    def generate(self, sender, silent):
        RUNNING.touch()
        while not sender.is_cancelled():
            if not silent:
                sender.send({"TEXT": np.array([b"z"], dtype=object)})
            time.sleep(0.005)
        sender.close()
"""
# Runs its request until it is cancelled (30 s at most), creating the file `running` at once
# and `cancelled` once it sees it cancelled: a unary request that outlives any grace. It also
# serves /v1/embeddings.
HELD = """
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


class InferdModel:
    def execute(self, batch):
        request = batch.requests[0]
        (HERE / "running").touch()
        deadline = time.monotonic() + 30
        while not request.is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.005)
        if request.is_cancelled():
            (HERE / "cancelled").touch()
        return {"OUT": np.array([1.0], np.float32)}
"""
HELD_CONFIG = """
name: "held"
backend: "python"
max_batch_size: 0
input [ { name: "IN", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] } ]
parameters [
  { key: "openai.task", value: { string_value: "embeddings" } },
  { key: "openai.input", value: { string_value: "IN" } },
  { key: "openai.output", value: { string_value: "OUT" } }
]
"""
# `endless` takes test_openai's decoupled PROMPT -> TEXT config for /v1/completions.
MODELS = {"endless": (ENDLESS, ENDLESS_CONFIG), "held": (HELD, HELD_CONFIG)}
ASGI_FAILURE = "Exception in ASGI application"  # uvicorn's log of a handler that raised
EXPRESS_FAILURE = "express infer lane: CancelledError"  # the express lane's, the same
SHUTTING_DOWN = {"error": "the server is shutting down"}
OPENAI_SHUTTING_DOWN = {
    "error": {
        "message": "the server is shutting down",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}


@contextmanager
def cut_request(
    repository: Path,
    model: str,
    path: str,
    body: bytes | Iterator[bytes],
    first_event: bool = False,
) -> Iterator[http.client.HTTPResponse]:
    """The answer to a request to `model` (of MODELS) still running when a 0.3 s shutdown
    grace expires: SIGTERM once the model runs it and, with `first_event`, once the stream's
    first event is read. A `body` of chunks is sent chunked (the ASGI way, never the express
    lane)."""
    write(repository, model, *MODELS[model])
    with running_server(repository, "--shutdown-grace-seconds", "0.3") as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        connection.request("POST", path, body=body)
        wait_for((repository / model / "1" / "running").exists, "the model to run")
        if not first_event:
            server.process.send_signal(signal.SIGTERM)
        answer = connection.getresponse()
        if first_event:
            assert answer.status == 200
            assert answer.readline().startswith(b"data:")
            server.process.send_signal(signal.SIGTERM)
        yield answer
        connection.close()
        assert server.process.wait(timeout=30) == 0
    log = server.log_text()
    assert ASGI_FAILURE not in log
    assert EXPRESS_FAILURE not in log
    assert "WARNING uvicorn.error: Cancel 1 running task(s), timeout graceful shutdown" in log


def cut_stream(repository: Path, path: str, document: dict[str, object]) -> list[bytes]:
    """The `data:` payloads of a stream cut at the grace, read to the end of its chunked body
    (http.client raises IncompleteRead on a body cut short)."""
    with cut_request(repository, "endless", path, json.dumps(document).encode(), True) as answer:
        rest = answer.read()
    return [line[6:] for line in rest.splitlines() if line.startswith(b"data: ")]


def test_a_generate_stream_cut_at_the_grace_ends_with_an_error_event(tmp_path: Path) -> None:
    data = cut_stream(tmp_path, "/v2/models/endless/generate_stream", {"PROMPT": "a"})
    assert json.loads(data[-1]) == {"error": "the server is shutting down"}
    assert all("error" not in json.loads(payload) for payload in data[:-1])


def test_an_openai_stream_cut_at_the_grace_ends_with_an_error_and_done(tmp_path: Path) -> None:
    document = {"model": "endless", "prompt": "a", "stream": True}
    data = cut_stream(tmp_path, "/v1/completions", document)
    assert data[-1] == b"[DONE]"
    assert json.loads(data[-2]) == OPENAI_SHUTTING_DOWN
    assert all("error" not in json.loads(payload) for payload in data[:-2])


def cut_unary(repository: Path, model: str, path: str, body: bytes | Iterator[bytes]) -> Any:
    """The 503 answer of a unary request cut at the grace: its JSON document."""
    with cut_request(repository, model, path, body) as answer:
        assert answer.status == 503
        assert answer.getheader("content-type") == "application/json"
        return json.loads(answer.read())


def test_a_stream_cut_before_its_first_event_is_answered_503(tmp_path: Path) -> None:
    path = "/v2/models/endless/generate_stream"
    assert cut_unary(tmp_path, "endless", path, b'{"PROMPT": "silent"}') == SHUTTING_DOWN


INFER = b'{"inputs": [{"name": "IN", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}'


def test_an_infer_cut_at_the_grace_is_answered_503(tmp_path: Path) -> None:
    """The express lane's: a plain body of a declared length. The model still sees its
    request cancelled."""
    assert cut_unary(tmp_path, "held", "/v2/models/held/infer", INFER) == SHUTTING_DOWN
    assert (tmp_path / "held" / "1" / "cancelled").exists()


def test_a_chunked_infer_cut_at_the_grace_is_answered_503(tmp_path: Path) -> None:
    """The ASGI path's."""
    body = iter([INFER[:10], INFER[10:]])
    assert cut_unary(tmp_path, "held", "/v2/models/held/infer", body) == SHUTTING_DOWN
    assert (tmp_path / "held" / "1" / "cancelled").exists()


def test_a_generate_cut_at_the_grace_is_answered_503(tmp_path: Path) -> None:
    path = "/v2/models/endless/generate"
    assert cut_unary(tmp_path, "endless", path, b'{"PROMPT": "silent"}') == SHUTTING_DOWN


def test_an_openai_completion_cut_at_the_grace_is_answered_503(tmp_path: Path) -> None:
    body = json.dumps({"model": "endless", "prompt": "a"}).encode()
    assert cut_unary(tmp_path, "endless", "/v1/completions", body) == OPENAI_SHUTTING_DOWN


def test_openai_embeddings_cut_at_the_grace_are_answered_503(tmp_path: Path) -> None:
    body = json.dumps({"model": "held", "input": "a"}).encode()
    assert cut_unary(tmp_path, "held", "/v1/embeddings", body) == OPENAI_SHUTTING_DOWN
    assert (tmp_path / "held" / "1" / "cancelled").exists()
