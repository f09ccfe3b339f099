"""A decoupled request is complete at its final response, as in Triton: its HTTP answer ends
there (`generate_stream`, `generate`, the OpenAI routes, streamed or not) while the model's
`execute` still runs, its connection carries the next request at once, and the request counts
as a success, not a cancellation, once that execution ends.

The model holds its execution after the final response until the test releases it (a file
named by the request's token), so each check holds however slow the machine is; an answer
that waited for the execution would time out on the client instead."""

from __future__ import annotations

import http.client
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.integration.http_helpers import get_json
from tests.integration.server import RunningServer, running_server
from tests.integration.test_generate import wait_for, write_python_model

# Answers the token in its prompt with its final response, then holds its execution until
# the file `<token>.release` appears beside it. A prompt "early <token>" is answered with a
# response that is not final, then held until its client goes away (noted in the file
# `<token>.cancelled`) or the release.
LINGERING = """
import re
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent

class InferdModel:
    def execute(self, batch):
        for request in batch.requests:
            prompt = request.inputs["PROMPT"].reshape(-1)[0].decode()
            token = re.search(r"tok[0-9]+", prompt).group()
            text = {"TEXT": np.array([token.encode()], dtype=object)}
            early = prompt.startswith("early")
            request.sender.send(text, final=not early)
            released = HERE / f"{token}.release"
            deadline = time.monotonic() + 60
            while not released.exists() and time.monotonic() < deadline:
                if early and request.sender.is_cancelled():
                    (HERE / f"{token}.cancelled").touch()
                    break
                time.sleep(0.01)
            request.sender.close()
"""
LINGERING_CONFIG = """
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "PROMPT", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [ { name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] } ]
parameters [
  { key: "openai.task", value: { string_value: "completions,chat" } },
  { key: "openai.input", value: { string_value: "PROMPT" } },
  { key: "openai.output", value: { string_value: "TEXT" } }
]
"""
# Far below the model's hold (60 s): an answer that waits for the execution fails the test.
ANSWER_TIMEOUT_S = 10
_tokens = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("stream_final")
    return write_python_model(repository, "lingering", LINGERING, LINGERING_CONFIG)


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[RunningServer]:
    with running_server(folder.parents[1]) as running:
        yield running


def statistics(port: int) -> tuple[int, int]:
    """(successes, failures) of `lingering`; a cancelled request is a failure."""
    stats = get_json(port, "/v2/models/lingering/stats")[1]["model_stats"][0]
    inference = stats["inference_stats"]
    return inference["success"]["count"], inference["fail"]["count"]


def release_and_count(server: RunningServer, folder: Path, token: str, before: Any) -> None:
    """The model still ran the request (it is not counted yet); released, it is a success."""
    assert statistics(server.http_port) == before
    (folder / f"{token}.release").touch()
    success = (before[0] + 1, before[1])
    wait_for(lambda: statistics(server.http_port) == success, "the request to count a success")


def generate_stream(token: str) -> tuple[str, dict[str, Any]]:
    return "/v2/models/lingering/generate_stream", {"PROMPT": token}


def generate(token: str) -> tuple[str, dict[str, Any]]:
    return "/v2/models/lingering/generate", {"PROMPT": token}


def completion(token: str, stream: bool = True) -> tuple[str, dict[str, Any]]:
    return "/v1/completions", {"model": "lingering", "prompt": token, "stream": stream}


def whole_completion(token: str) -> tuple[str, dict[str, Any]]:
    return completion(token, stream=False)


def chat(token: str) -> tuple[str, dict[str, Any]]:
    messages = [{"role": "user", "content": token}]
    return "/v1/chat/completions", {"model": "lingering", "messages": messages, "stream": True}


@pytest.mark.parametrize(
    "endpoint",
    [generate_stream, generate, completion, whole_completion, chat],
    ids=lambda endpoint: endpoint.__name__,
)
def test_the_answer_ends_at_the_final_response_on_a_connection_that_serves_on(
    server: RunningServer, folder: Path, endpoint: Any
) -> None:
    before = statistics(server.http_port)
    token = f"tok{next(_tokens)}"
    path, document = endpoint(token)
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, ANSWER_TIMEOUT_S)
    try:
        connection.request("POST", path, body=json.dumps(document))
        response = connection.getresponse()
        body = response.read().decode()  # to its end, while the model still runs
        assert response.status == 200 and token in body
        if document.get("stream"):
            assert body.endswith("data: [DONE]\n\n") == path.startswith("/v1")
        used = connection.sock
        # The next request on the same connection is answered before the execution ends.
        connection.request("GET", "/v2/models/lingering/stats")
        assert connection.getresponse().status == 200
        assert used is not None and connection.sock is used
    finally:
        connection.close()
    release_and_count(server, folder, token, before)


def test_the_openai_client_reads_each_stream_to_its_end_at_the_final_response(
    server: RunningServer, folder: Path
) -> None:
    """`openai` reads a stream's body to its end after `[DONE]`."""
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.http_port}/v1",
        api_key="unused",
        max_retries=0,
        timeout=ANSWER_TIMEOUT_S,
    )
    before = statistics(server.http_port)
    token = f"tok{next(_tokens)}"
    chunks = client.completions.create(model="lingering", prompt=token, stream=True)
    assert "".join(chunk.choices[0].text for chunk in chunks) == token
    release_and_count(server, folder, token, before)

    before = statistics(server.http_port)
    token = f"tok{next(_tokens)}"
    messages: Any = [{"role": "user", "content": token}]
    stream = client.chat.completions.create(model="lingering", messages=messages, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == token
    release_and_count(server, folder, token, before)


def test_a_client_that_leaves_before_the_final_response_cancels_the_request(
    server: RunningServer, folder: Path
) -> None:
    before = statistics(server.http_port)
    token = f"tok{next(_tokens)}"
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, ANSWER_TIMEOUT_S)
    try:
        body = json.dumps({"PROMPT": f"early {token}"})
        connection.request("POST", "/v2/models/lingering/generate_stream", body=body)
        response = connection.getresponse()
        assert response.status == 200 and token in response.readline().decode()
    finally:
        connection.close()
    wait_for((folder / f"{token}.cancelled").exists, "the model to see its request cancelled")
    failed = (before[0], before[1] + 1)
    wait_for(lambda: statistics(server.http_port) == failed, "the request to count a failure")
