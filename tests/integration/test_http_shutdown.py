"""SIGTERM with a `generate_stream` in flight: the HTTP frontend gives it the whole grace
period, a fraction of a second included, as the gRPC frontend does; and a stream still running
when the grace expires ends as with any error, its response complete, with no failure logged."""

from __future__ import annotations

import http.client
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.model_files import write
from tests.integration.server import running_server
from tests.integration.test_generate import wait_for

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
ENDLESS_CONFIG = """
name: "endless"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "PROMPT", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [ { name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] } ]
parameters [
  { key: "openai.task", value: { string_value: "completions" } },
  { key: "openai.input", value: { string_value: "PROMPT" } },
  { key: "openai.output", value: { string_value: "TEXT" } }
]
"""
ASGI_FAILURE = "Exception in ASGI application"  # uvicorn's log of a handler that raised


@contextmanager
def cut_request(
    repository: Path, path: str, document: dict[str, object]
) -> Iterator[http.client.HTTPResponse]:
    """The answer to a request to `endless` still running when a 0.3 s shutdown grace
    expires (SIGTERM once the model runs it and, for a stream, its first event is read)."""
    write(repository, "endless", ENDLESS, ENDLESS_CONFIG)
    with running_server(repository, "--shutdown-grace-seconds", "0.3") as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        connection.request("POST", path, body=json.dumps(document))
        wait_for((repository / "endless" / "1" / "running").exists, "the model to run")
        silent = document.get("PROMPT") == "silent"
        if silent:
            server.process.send_signal(signal.SIGTERM)
        answer = connection.getresponse()
        if not silent:
            assert answer.status == 200
            assert answer.readline().startswith(b"data:")
            server.process.send_signal(signal.SIGTERM)
        yield answer
        connection.close()
        assert server.process.wait(timeout=30) == 0
    log = server.log_text()
    assert ASGI_FAILURE not in log
    assert "WARNING uvicorn.error: Cancel 1 running task(s), timeout graceful shutdown" in log


def cut_stream(repository: Path, path: str, document: dict[str, object]) -> list[bytes]:
    """The `data:` payloads of a stream cut at the grace, read to the end of its chunked body
    (http.client raises IncompleteRead on a body cut short)."""
    with cut_request(repository, path, document) as answer:
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
    assert json.loads(data[-2]) == {
        "error": {
            "message": "the server is shutting down",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert all("error" not in json.loads(payload) for payload in data[:-2])


def test_a_stream_cut_before_its_first_event_is_answered_503(tmp_path: Path) -> None:
    path = "/v2/models/endless/generate_stream"
    with cut_request(tmp_path, path, {"PROMPT": "silent"}) as answer:
        assert answer.status == 503
        assert json.loads(answer.read()) == {"error": "the server is shutting down"}
