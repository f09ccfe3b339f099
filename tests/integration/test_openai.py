"""The OpenAI-compatible API (/v1) on the real server, spoken by the official `openai` client
and by plain HTTP: the example models `tiny_lm` (a decoupled character-level language model)
and `tiny_embed` (text embeddings), errors, and a streaming client that goes away."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from tests.integration.http_helpers import get_json, post_json, request
from tests.integration.server import RunningServer, running_server
from tests.integration.test_generate import EXAMPLES, wait_for, write_python_model

# Streams "z" every few milliseconds until its client goes away, then says so in a file.
ENDLESS = """
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent

class InferdModel:
    def execute(self, batch):
        for request in batch.requests:
            threading.Thread(target=self.generate, args=(request.sender,)).start()

    def generate(self, sender):
        for _ in range(20000):
            if sender.is_cancelled():
                (HERE / "cancelled").touch()
                break
            sender.send({"TEXT": np.array([b"z"], dtype=object)})
            time.sleep(0.005)
        sender.close()
"""
ENDLESS_CONFIG = """
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
# Not decoupled, batching: answers at once with the prompt in capitals and the request
# parameters it was given (the sampling fields its config maps to no input).
SHOUT = """
import numpy as np

class InferdModel:
    def execute(self, batch):
        texts = []
        for request in batch.requests:
            prompt = request.inputs["PROMPT"].reshape(-1)[0].decode()
            given = sorted(request.parameters.items())
            texts.append([f"{prompt.upper()} {given}".encode()])
        return {"TEXT": np.array(texts, dtype=object)}
"""
SHOUT_CONFIG = """
backend: "python"
max_batch_size: 4
input [ { name: "PROMPT", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [ { name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] } ]
parameters [
  { key: "openai.task", value: { string_value: "completions,chat" } },
  { key: "openai.input", value: { string_value: "PROMPT" } },
  { key: "openai.output", value: { string_value: "TEXT" } }
]
"""
# Sends one piece of text, then fails.
BROKEN = """
import numpy as np

class InferdModel:
    def execute(self, batch):
        for request in batch.requests:
            request.sender.send({"TEXT": np.array([b"partial"], dtype=object)})
            request.sender.send_error("the model broke")
"""
GREEDY = {"temperature": 0.0, "max_tokens": 12}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two example text models, `repeat` (not served on /v1) and the models above."""
    repository = tmp_path_factory.mktemp("openai")
    for name in ("tiny_lm", "tiny_embed", "repeat"):
        shutil.copytree(EXAMPLES / name, repository / name)
    write_python_model(repository, "endless", ENDLESS, ENDLESS_CONFIG)
    write_python_model(repository, "shout", SHOUT, SHOUT_CONFIG.replace("max_batch_size: 4", ""))
    write_python_model(repository, "broken", BROKEN, ENDLESS_CONFIG)
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.http_port}/v1", api_key="unused", max_retries=0
    )


def test_models_lists_what_v1_serves(client: openai.OpenAI) -> None:
    served = ["broken", "endless", "shout", "tiny_embed", "tiny_lm"]
    assert sorted(m.id for m in client.models.list()) == served
    assert client.models.retrieve("tiny_lm").id == "tiny_lm"


def test_a_completion_with_usage(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="tiny_lm", prompt="Alice was", **GREEDY)
    choice = completion.choices[0]
    assert len(choice.text) == 12
    assert choice.finish_reason == "length"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 12)
    again = client.completions.create(model="tiny_lm", prompt="Alice was", **GREEDY)
    assert again.choices[0].text == choice.text  # greedy: deterministic


def test_a_streamed_completion_is_the_same_text_one_character_at_a_time(
    client: openai.OpenAI,
) -> None:
    whole = client.completions.create(model="tiny_lm", prompt="The rabbit", **GREEDY)
    stream = client.completions.create(model="tiny_lm", prompt="The rabbit", stream=True, **GREEDY)
    chunks = list(stream)
    pieces = [c.choices[0].text for c in chunks if c.choices[0].text]
    assert len(pieces) == 12
    assert "".join(pieces) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_a_seed_makes_sampling_reproducible(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        completion = client.completions.create(
            model="tiny_lm", prompt="Alice", max_tokens=40, seed=seed
        )
        return completion.choices[0].text

    assert sample(3) == sample(3)
    assert len({sample(seed) for seed in range(4)}) > 1


def test_a_stop_string_ends_the_text_before_it(client: openai.OpenAI) -> None:
    full = client.completions.create(model="tiny_lm", prompt="Alice", max_tokens=40, seed=1)
    text = full.choices[0].text
    stop = text[10:12]
    for stream in (False, True):
        answer = client.completions.create(
            model="tiny_lm", prompt="Alice", max_tokens=40, seed=1, stop=[stop], stream=stream
        )
        chunks = list(answer) if stream else [answer]
        assert "".join(c.choices[0].text for c in chunks) == text[: text.index(stop)]
        assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_completions(client: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "system", "content": "You are a rabbit."},
        {"role": "user", "content": "Where to?"},
    ]
    chat = client.chat.completions.create(model="tiny_lm", messages=messages, **GREEDY)
    message = chat.choices[0].message
    assert message.role == "assistant"
    assert message.content is not None
    assert len(message.content) == 12
    # The default template, whose characters are tiny_lm's tokens:
    template = "system: You are a rabbit.\nuser: Where to?\nassistant: "
    assert chat.usage is not None
    assert chat.usage.prompt_tokens == len(template)
    stream = client.chat.completions.create(
        model="tiny_lm",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        **GREEDY,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == message.content
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12


def test_embeddings_as_floats_and_as_base64(client: openai.OpenAI, server: RunningServer) -> None:
    texts = ["a white rabbit", "a white rabbit!", "the hot day"]
    default = client.embeddings.create(model="tiny_embed", input=texts)  # asks for base64
    floats = client.embeddings.create(model="tiny_embed", input=texts, encoding_format="float")
    vectors = np.array([e.embedding for e in floats.data])
    assert vectors.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose([e.embedding for e in default.data], vectors, rtol=1e-6)
    similar, different = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > different
    assert floats.usage.prompt_tokens == 14 + 15 + 11  # trigrams of " text "
    status, raw = post_json(
        server.http_port,
        "/v1/embeddings",
        {"model": "tiny_embed", "input": "the hot day", "encoding_format": "base64"},
    )
    assert status == 200
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), "<f4")
    np.testing.assert_allclose(decoded, vectors[2], rtol=1e-6)


@pytest.mark.parametrize(
    ("call", "status", "param"),
    [
        (lambda c: c.completions.create(model="nope", prompt="x"), 404, None),
        (lambda c: c.completions.create(model="repeat", prompt="x"), 404, None),
        (lambda c: c.completions.create(model="tiny_lm", prompt="x", n=2), 400, "n"),
        (lambda c: c.completions.create(model="tiny_lm", prompt="x", logprobs=2), 400, "logprobs"),
        (
            lambda c: c.completions.create(model="tiny_lm", prompt="x", max_tokens=10**9),
            400,
            "max_tokens",
        ),
        (lambda c: c.embeddings.create(model="tiny_lm", input="x"), 400, "model"),
        (lambda c: c.embeddings.create(model="tiny_embed", input=[1, 2]), 400, "input"),
        (
            lambda c: c.chat.completions.create(
                model="tiny_lm",
                messages=[{"role": "user", "content": "x"}],
                tools=[{"type": "function", "function": {"name": "f"}}],
            ),
            400,
            "tools",
        ),
    ],
)  # fmt: skip
def test_errors_reach_the_client_as_openai_errors(
    client: openai.OpenAI, call: Any, status: int, param: str | None
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        call(client)
    assert caught.value.status_code == status
    body: Any = caught.value.body
    assert body["param"] == param
    assert body["type"] == "invalid_request_error"
    assert body["message"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/completions", '{"model": "tiny_lm", "prompt": ', 400),
        ("/v1/completions", "[1, 2]", 400),
        ("/v1/completions", '{"model": 5, "prompt": "x"}', 400),
        ("/v1/completions", '{"model": "tiny_lm", "prompt": "x", "max_tokens": "many"}', 400),
        ("/v1/completions", '{"model": "tiny_lm", "prompt": "x", "temperature": true}', 400),
        ("/v1/completions", '{"model": "tiny_lm", "prompt": "x", "stop": [1]}', 400),
        ("/v1/completions", '{"model": "tiny_lm", "prompt": "x", "n": 2, "stream": true}', 400),
        ("/v1/chat/completions", '{"model": "tiny_lm", "messages": "hi"}', 400),
        ("/v1/chat/completions", '{"model": "tiny_lm", "messages": [{"role": "x"}]}', 400),
        ("/v1/embeddings", '{"model": "tiny_embed", "input": "x", "encoding_format": "hex"}', 400),
        ("/v1/embeddings", '{"model": "unknown", "input": "x"}', 404),
        ("/v1/unknown", "{}", 404),
    ],
)
def test_hostile_requests_are_answered_with_openai_errors(
    server: RunningServer, path: str, body: str, status: int
) -> None:
    answer_status, headers, answer = request(server.http_port, "POST", path, body)
    assert answer_status == status
    assert headers["content-type"] == "application/json"
    error = json.loads(answer)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]


def test_a_get_on_a_post_route_is_refused(server: RunningServer) -> None:
    status, answer = get_json(server.http_port, "/v1/completions")
    assert status == 405
    assert "POST" in answer["error"]["message"]


def test_a_streaming_client_that_goes_away_stops_the_model(
    client: openai.OpenAI, repository: Path
) -> None:
    marker = repository / "endless" / "1" / "cancelled"
    stream = client.completions.create(model="endless", prompt="x", stream=True)
    pieces = [chunk.choices[0].text for chunk, _ in zip(stream, range(3), strict=False)]
    assert pieces == ["z", "z", "z"]
    stream.close()
    wait_for(marker.exists, "the model to see its request cancelled")
    completion = client.completions.create(model="tiny_lm", prompt="Alice", **GREEDY)
    assert len(completion.choices[0].text) == 12


def test_a_model_that_is_not_decoupled_answers_at_once_and_reads_fields_as_parameters(
    client: openai.OpenAI,
) -> None:
    completion = client.completions.create(
        model="shout", prompt="hello", max_tokens=7, top_p=0.5, stop=["zzz"]
    )
    # It echoes the stop string too, where the text then ends.
    assert completion.choices[0].text == "HELLO [('max_tokens', 7), ('stop', '[\""
    assert completion.choices[0].finish_reason == "stop"
    completion = client.completions.create(model="shout", prompt="hello", max_tokens=7, seed=3)
    assert completion.choices[0].text == "HELLO [('max_tokens', 7), ('seed', 3)]"
    assert completion.usage is None  # the model reports no token counts
    stream = client.chat.completions.create(
        model="shout", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text == "USER: HI\nASSISTANT:  []"


def test_a_model_error_mid_stream_is_an_error_event(
    client: openai.OpenAI, server: RunningServer
) -> None:
    stream = client.completions.create(model="broken", prompt="x", stream=True)
    with pytest.raises(openai.APIError, match="the model broke"):
        list(stream)
    status, _, body = request(
        server.http_port,
        "POST",
        "/v1/completions",
        '{"model": "broken", "prompt": "x", "stream": true}',
    )
    events = [line.removeprefix("data: ") for line in body.decode().split("\n\n") if line]
    assert status == 200
    assert json.loads(events[0])["choices"][0]["text"] == "partial"
    assert json.loads(events[1])["error"]["message"] == "the model broke"
    assert events[2:] == ["[DONE]"]
