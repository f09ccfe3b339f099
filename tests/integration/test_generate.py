"""Triton's generate extension (`generate`, and `generate_stream` as server-sent events) on the
real server, spoken in plain HTTP: the JSON <-> tensor mapping, errors, client disconnects."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.http_helpers import get_json, post_json, request
from tests.integration.server import RunningServer, running_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "model_repository"
ENDPOINTS = ["generate", "generate_stream"]

# Text in, text out: a batching model with string (BYTES) input and outputs.
ECHO = """
import numpy as np

class InferdModel:
    def execute(self, batch):
        prompts = [p.decode() for p in batch.inputs["PROMPT"].reshape(-1)]
        return {
            "TEXT": np.array([[p.upper().encode()] for p in prompts], dtype=object),
            "WORDS": np.array([[w.encode() for w in p.split()[:2]] for p in prompts], dtype=object),
            "LENGTH": np.array([[len(p)] for p in prompts], dtype=np.int32),
        }
"""
ECHO_CONFIG = """
backend: "python"
max_batch_size: 4
input [ { name: "PROMPT", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [
  { name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] },
  { name: "WORDS", data_type: TYPE_STRING, dims: [ 2 ] },
  { name: "LENGTH", data_type: TYPE_INT32, dims: [ 1 ] }
]
"""

# Variable dimensions, no batching: X [2, -1] -> its shape and its sum.
GRID = """
import numpy as np

class InferdModel:
    def execute(self, batch):
        x = batch.inputs["X"]
        return {"SHAPE": np.array(x.shape, dtype=np.int64), "SUM": np.array([x.sum()], np.float32)}
"""
GRID_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "X", data_type: TYPE_FP32, dims: [ 2, -1 ] } ]
output [
  { name: "SHAPE", data_type: TYPE_INT64, dims: [ 2 ] },
  { name: "SUM", data_type: TYPE_FP32, dims: [ 1 ] }
]
"""

# Holds its execution until the test creates the file `release` beside it (so the test knows
# the request is running when its client goes away); `started` tells the test it began.
HOLD = """
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent

class InferdModel:
    def execute(self, batch):
        if batch.inputs["WAIT"].reshape(-1)[0]:
            (HERE / "started").touch()
            deadline = time.monotonic() + 60
            while not (HERE / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return {"DONE": np.ones((1,), dtype=np.bool_)}
"""
HOLD_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "WAIT", data_type: TYPE_BOOL, dims: [ 1 ] } ]
output [ { name: "DONE", data_type: TYPE_BOOL, dims: [ 1 ] } ]
"""

FAILING = """
from inferd.backends.python import InferenceError

class InferdModel:
    def execute(self, batch):
        raise InferenceError("the model refuses this prompt")
"""
FAILING_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "PROMPT", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [ { name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] } ]
"""


def write_python_model(repository: Path, name: str, code: str, config: str) -> Path:
    version = repository / name / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(textwrap.dedent(code))
    (repository / name / "config.pbtxt").write_text(f'name: "{name}"\n{config}')
    return version


@pytest.fixture(scope="module")
def repository(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`simple` and `mlp` (the shared test repository), `add_sub_python` and the decoupled
    `repeat` (the example repository's) and the Python models above."""
    repository = tmp_path_factory.mktemp("generate")
    shutil.copytree(model_repository, repository, dirs_exist_ok=True)
    shutil.copytree(EXAMPLES / "add_sub_python", repository / "add_sub_python")
    shutil.copytree(EXAMPLES / "repeat", repository / "repeat")
    write_python_model(repository, "echo", ECHO, ECHO_CONFIG)
    write_python_model(repository, "grid", GRID, GRID_CONFIG)
    write_python_model(repository, "hold", HOLD, HOLD_CONFIG)
    write_python_model(repository, "failing", FAILING, FAILING_CONFIG)
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


def generate(server: RunningServer, model: str, document: Any) -> tuple[int, Any]:
    return post_json(server.http_port, f"/v2/models/{model}/generate", document)


def stream_events(
    server: RunningServer, model: str, body: str
) -> tuple[int, dict[str, str], list[Any]]:
    """POST to generate_stream; the status, headers and each event's data, read line by line
    as they arrive."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        connection.request("POST", f"/v2/models/{model}/generate_stream", body=body.encode())
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        if not headers["content-type"].startswith("text/event-stream"):
            return response.status, headers, [json.loads(response.read())]
        events = []
        for raw in iter(response.readline, b""):
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
            else:
                assert line == "", f"not an SSE line: {line!r}"
        return response.status, headers, events
    finally:
        connection.close()


SIMPLE = {"INPUT0": list(range(16)), "INPUT1": [1] * 16}
SIMPLE_ANSWER = {
    "OUTPUT0": [i + 1 for i in range(16)],
    "OUTPUT1": [i - 1 for i in range(16)],
    "model_name": "simple",
    "model_version": "1",
}


def test_generate_answers_one_object_of_outputs(server: RunningServer) -> None:
    assert generate(server, "simple", SIMPLE) == (200, SIMPLE_ANSWER)
    status, answer = generate(server, "add_sub_python", {"INPUT0": [1, 2, 3, 4], "INPUT1": 0.5})
    assert status == 400 and "1 value cannot fill it" in answer["error"]
    status, answer = post_json(
        server.http_port,
        "/v2/models/add_sub_python/versions/1/generate",
        {"INPUT0": [1, 2, 3, 4], "INPUT1": [0.5] * 4, "id": "req-7"},
    )
    assert status == 200
    assert answer == {
        "OUTPUT0": [1.5, 2.5, 3.5, 4.5],
        "OUTPUT1": [0.5, 1.5, 2.5, 3.5],
        "model_name": "add_sub_python",
        "model_version": "1",
        "id": "req-7",
    }
    status, answer = generate(server, "mlp", {"input": [0.25] * 8})
    assert status == 200 and len(answer["output"]) == 4
    assert all(isinstance(value, float) for value in answer["output"])


def test_strings_map_to_bytes_and_one_element_outputs_are_scalars(server: RunningServer) -> None:
    status, answer = generate(server, "echo", {"PROMPT": "héllo wide world"})
    assert status == 200
    assert answer == {
        "TEXT": "HÉLLO WIDE WORLD",
        "WORDS": ["héllo", "wide"],
        "LENGTH": 16,
        "model_name": "echo",
        "model_version": "1",
    }
    assert generate(server, "echo", {"PROMPT": ["a b"]})[1]["TEXT"] == "A B"
    status, answer = generate(server, "echo", {"PROMPT": 7})
    assert status == 400 and "does not hold BYTES values" in answer["error"]


def test_variable_dimensions_are_resolved_from_the_value(server: RunningServer) -> None:
    status, answer = generate(server, "grid", {"X": [1, 2, 3, 4, 5, 6]})
    assert (status, answer["SHAPE"], answer["SUM"]) == (200, [2, 3], 21.0)
    status, answer = generate(server, "grid", {"X": [[1, 2], [3, 4]]})
    assert (status, answer["SHAPE"]) == (200, [2, 2])
    for wrong in ([1, 2, 3], [[1, 2], [3, 4], [5, 6]], [[1, 2], [3]], 5):
        status, answer = generate(server, "grid", {"X": wrong})
        assert status == 400, wrong
        assert "input 'X'" in answer["error"], answer


def test_inputs_may_come_in_parameters_and_other_keys_are_parameters(
    server: RunningServer,
) -> None:
    document = {
        "INPUT0": SIMPLE["INPUT0"],
        "parameters": {"INPUT1": SIMPLE["INPUT1"], "temperature": 0.5, "stream": False},
        "max_tokens": 3,
    }
    assert generate(server, "simple", document) == (200, SIMPLE_ANSWER)
    twice = {**SIMPLE, "parameters": {"INPUT1": SIMPLE["INPUT1"]}}
    status, answer = generate(server, "simple", twice)
    assert status == 400 and "both at the top level and in 'parameters'" in answer["error"]


def test_generate_stream_sends_each_response_as_an_event(server: RunningServer) -> None:
    status, headers, events = stream_events(server, "simple", json.dumps(SIMPLE))
    assert status == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert events == [SIMPLE_ANSWER]
    status, _, events = stream_events(server, "echo", '{"PROMPT": "ab cd", "id": "s1"}')
    assert status == 200
    assert events == [
        {
            "TEXT": "AB CD",
            "WORDS": ["ab", "cd"],
            "LENGTH": 5,
            "model_name": "echo",
            "model_version": "1",
            "id": "s1",
        }
    ]


def test_a_model_error_is_answered_with_the_error_shape(server: RunningServer) -> None:
    status, answer = generate(server, "failing", {"PROMPT": "x"})
    assert status == 400 and answer == {"error": "the model refuses this prompt"}
    status, headers, events = stream_events(server, "failing", '{"PROMPT": "x"}')
    assert (status, events) == (400, [{"error": "the model refuses this prompt"}])
    assert headers["content-type"] == "application/json"


HOSTILE = [
    ("simple", b"{not json", "malformed JSON"),
    ("simple", b"", "malformed JSON"),
    ("simple", b"[1, 2]", "must be a JSON object"),
    ("simple", b'"text"', "must be a JSON object"),
    ("simple", b'{"NOT_AN_INPUT": [1, 2]}', "is not an input of model"),
    ("simple", b'{"INPUT0": [1, 2, 3]}', "cannot fill it"),
    ("simple", json.dumps({"INPUT0": SIMPLE["INPUT0"]}).encode(), "required input(s) ['INPUT1']"),
    ("simple", b'{"INPUT0": "sixteen", "INPUT1": 1}', "does not hold INT32 values"),
    ("simple", b'{"INPUT0": null, "INPUT1": 1}', "not null"),
    ("simple", b'{"INPUT0": {"a": 1}, "INPUT1": 1}', "not an object"),
    ("simple", b'{"INPUT0": [[1, 2], [3]], "INPUT1": 1}', "does not hold INT32 values"),
    ("simple", b'{"INPUT0": [[0, 1, 2, 3, 4, 5, 6, 7]], "INPUT1": 1}', "a nested list"),
    ("add_sub_python", b'{"INPUT0": ["a", "b", "c", "d"], "INPUT1": 1}', "FP32"),
    ("simple", b'{"INPUT0": [' + b",".join([b"1"] * 1_000_000) + b"]}", "1000000 values"),
    ("simple", b'{"INPUT0": [1e400]}', "malformed JSON"),
    ("simple", b'{"parameters": [1]}', "'parameters'"),
    ("simple", b'{"id": 5}', "'id' must be a string"),
    ("nope", b"{}", "unknown model"),
    ("simple/versions/9", b"{}", "'simple' version 9 is not found"),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("model", "body", "message"), HOSTILE, ids=lambda v: str(v)[:40])
def test_hostile_input_is_a_4xx_with_triton_error_shape(
    server: RunningServer, endpoint: str, model: str, body: bytes, message: str
) -> None:
    status, headers, answer = request(
        server.http_port, "POST", f"/v2/models/{model}/{endpoint}", body
    )
    assert 400 <= status < 500, (status, answer)
    assert headers["content-type"] == "application/json"
    error = json.loads(answer)
    assert list(error) == ["error"] and message in error["error"], error


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_only_post_is_allowed(server: RunningServer, endpoint: str) -> None:
    status, answer = get_json(server.http_port, f"/v2/models/simple/{endpoint}")
    assert status == 405 and "POST" in answer["error"]


def test_server_metadata_lists_the_generate_extension(server: RunningServer) -> None:
    assert "generate" in get_json(server.http_port, "/v2")[1]["extensions"]


def hold_statistics(server: RunningServer) -> tuple[int, int]:
    """(successes, failures) of the `hold` model."""
    stats = get_json(server.http_port, "/v2/models/hold/stats")[1]["model_stats"][0]
    inference = stats["inference_stats"]
    return inference["success"]["count"], inference["fail"]["count"]


def wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_client_that_goes_away_stops_its_request(
    server: RunningServer, repository: Path, endpoint: str
) -> None:
    """The request the client left is cancelled (counted a failure, never a success) while the
    model still runs it, and the server goes on serving."""
    model_folder = repository / "hold" / "1"
    for marker in ("started", "release"):
        (model_folder / marker).unlink(missing_ok=True)
    successes, failures = hold_statistics(server)
    body = b'{"WAIT": true}'
    head = (
        f"POST /v2/models/hold/{endpoint} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.http_port)) as client:
        client.sendall(head + body)
        wait_for((model_folder / "started").exists, "the model to start")
    cancelled = (successes, failures + 1)
    wait_for(lambda: hold_statistics(server) == cancelled, "the request to be cancelled")
    assert generate(server, "simple", SIMPLE) == (200, SIMPLE_ANSWER)
    (model_folder / "release").touch()
    status, answer = generate(server, "hold", {"WAIT": False})
    assert (status, answer["DONE"]) == (200, True)
    assert hold_statistics(server) == (successes + 1, failures + 1)


def test_a_decoupled_model_streams_one_event_per_response(server: RunningServer) -> None:
    """`repeat` sends IN back TIMES times, then its final flag alone: no event of its own."""
    status, _, events = stream_events(server, "repeat", '{"IN": [4, 5], "TIMES": 3}')
    assert status == 200
    assert events == [
        {"OUT": [4, 5], "IDX": index, "model_name": "repeat", "model_version": "1"}
        for index in range(3)
    ]
    assert stream_events(server, "repeat", '{"IN": [4, 5], "TIMES": 0}')[::2] == (200, [])


def test_generate_takes_a_decoupled_model_with_exactly_one_response(
    server: RunningServer,
) -> None:
    status, answer = generate(server, "repeat", {"IN": [7], "TIMES": 1})
    assert (status, answer["OUT"], answer["IDX"]) == (200, 7, 0)
    status, answer = generate(server, "repeat", {"IN": [7], "TIMES": 2})
    assert status == 400 and "exactly 1 response" in answer["error"]
    assert generate(server, "simple", SIMPLE) == (200, SIMPLE_ANSWER)
