"""Unloading a model ends the requests it is still working on as a client's cancellation does:
the model sees them cancelled (`is_cancelled()`), in the server's process and in a worker
process, so that work it does until then stops; the unload returns, and the model loads and
serves again. The requests' clients get a clean end: on a gRPC stream the request's
UNAVAILABLE error, and on the OpenAI routes' streams (`/v1/completions`,
`/v1/chat/completions`, read by the `openai` client and by plain HTTP) one last
`data: {"error": ...}` event, then `data: [DONE]`, then the end of the response.

(That a stream open at unload ends with UNAVAILABLE over gRPC and `generate_stream`, and that
the model's sends are dropped from then on, is `test_stream_endings.py`'s.)"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
import tritonclient.grpc as grpcclient

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_decoupled import ISOLATIONS, Stream
from tests.integration.test_stream_endings import ended

# `watch` waits (sending meanwhile, if asked to) until the request is cancelled, for 10 s at
# most, then logs which came first.
WATCHER = """
import threading
import time

import numpy as np

class Watcher:
    def initialize(self, context):
        self.marker = context.parameters["marker"]
        self.lock = threading.Lock()

    def log(self, line):
        with self.lock, open(self.marker, "a") as marker:
            marker.write(line + "\\n")

    def watch(self, request_id, cancelled, send=None):
        deadline = time.monotonic() + 10
        while not cancelled():
            if time.monotonic() > deadline:
                self.log(f"{request_id} never cancelled")
                return
            if send is not None:
                send()
            time.sleep(0.02)
        self.log(f"{request_id} cancelled")
"""

# Decoupled: IN = 0 answers at once; else a thread of its own sends until the request is
# cancelled (`execute` returns at once, so the unload has nothing to wait for).
STREAMING = (
    WATCHER
    + """
class InferdModel(Watcher):
    def execute(self, batch):
        for request in batch.requests:
            sender = request.sender
            if not request.inputs["IN"].any():
                sender.send({"OUT": np.array([0], np.int32)}, final=True)
                continue
            send = lambda sender=sender: sender.send({"OUT": np.array([7], np.int32)})
            watching = (request.id, sender.is_cancelled, send)
            threading.Thread(target=self.watch, args=watching).start()
"""
)

# Iterative (decoupled or not): IN = 0 finishes at its first step; else the step runs until
# the request is cancelled (the unload waits for it), then asks for another step.
STEPPING = (
    WATCHER
    + """
class InferdModel(Watcher):
    def execute(self, batch):
        answers = []
        for request in batch.requests:
            self.log(f"step {request.id}")
            answer = {"OUT": np.array([0], np.int32)}
            if request.inputs["IN"].any():
                self.watch(request.id, request.is_cancelled)
                request.reschedule()
            elif request.sender is not None:
                request.sender.send(answer, final=True)
            answers.append(answer)
        return None if batch.requests[0].sender is not None else answers[0]
"""
)

# An OpenAI text model: the prompt "once" is answered "z" at once; any other, "z" after "z"
# from a thread of its own until the request is cancelled.
CHATTY = (
    WATCHER
    + """
class InferdModel(Watcher):
    def execute(self, batch):
        for request in batch.requests:
            sender = request.sender
            text = {"TEXT": np.array([b"z"], dtype=object)}
            prompt = request.inputs["PROMPT"].reshape(-1)[0].decode()
            if prompt == "once":
                sender.send(text, final=True)
                continue
            prompt_id = prompt.split("go ", 1)[1].split()[0]  # also in a chat's template
            send = lambda sender=sender: sender.send(text)
            watching = (prompt_id, sender.is_cancelled, send)
            threading.Thread(target=self.watch, args=watching).start()
"""
)

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
{policy}
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ -1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
parameters [
  {{ key: "isolation", value: {{ string_value: "{isolation}" }} }},
  {{ key: "marker", value: {{ string_value: "{marker}" }} }}
]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
{scheduling}
"""
CHATTY_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
{policy}
input [ {{ name: "PROMPT", data_type: TYPE_STRING, dims: [ 1 ] }} ]
output [ {{ name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] }} ]
parameters [
  {{ key: "isolation", value: {{ string_value: "{isolation}" }} }},
  {{ key: "marker", value: {{ string_value: "{marker}" }} }},
  {{ key: "openai.task", value: {{ string_value: "completions,chat" }} }},
  {{ key: "openai.input", value: {{ string_value: "PROMPT" }} }},
  {{ key: "openai.output", value: {{ string_value: "TEXT" }} }}
]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
"""
DECOUPLED = "model_transaction_policy { decoupled: true }"
ITERATIVE = "sequence_batching { iterative_sequence: true }"

# name: code, config, transaction policy, scheduling; each written in each isolation mode.
MODELS = {
    "streaming": (STREAMING, CONFIG, DECOUPLED, ""),
    "stepping": (STEPPING, CONFIG, "", ITERATIVE),
    "stepping_streamed": (STEPPING, CONFIG, DECOUPLED, ITERATIVE),
    "chatty": (CHATTY, CHATTY_CONFIG, DECOUPLED, ""),
}


@pytest.fixture(scope="module")
def controlled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    """A server in explicit model control with every model loaded; its repository."""
    root = tmp_path_factory.mktemp("unload_cancellation")
    names = []
    for base, (code, config, policy, scheduling) in MODELS.items():
        for isolation in ISOLATIONS:
            name = f"{base}_{isolation}"
            marker = root / f"{name}.seen"
            text = config.format(
                name=name, isolation=isolation, marker=marker, policy=policy, scheduling=scheduling
            )
            write(root, name, code, text)
            names.append(name)
    loads = [arg for name in names for arg in ("--load-model", name)]
    with running_server(root, "--model-control-mode", "explicit", *loads) as running:
        yield running, root


def logged(marker: Path, start: str) -> list[str]:
    """The lines the model logged that begin with `start`, once there is one (30 s at most:
    a model that never sees its request cancelled logs so within 10 s)."""
    deadline = time.monotonic() + 30
    while True:
        lines = marker.read_text().splitlines() if marker.exists() else []
        found = [line for line in lines if line.startswith(start)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def unload(server: RunningServer, model: str) -> None:
    """Unload `model`; a deadline instead of a hang should the unload never end."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        client.unload_model(model, client_timeout=60)
    finally:
        client.close()


def load(server: RunningServer, model: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        client.load_model(model)
    finally:
        client.close()


def reloaded_answers(server: RunningServer, model: str) -> str:
    """Load `model` again; how a request that it answers at once (IN = 0) ends."""
    load(server, model)
    stream = Stream(server)
    try:
        stream.send(model, [0], "after")
        return ended(stream, "after")
    finally:
        stream.close()


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_unloading_cancels_a_request_whose_model_sends_from_a_thread_of_its_own(
    controlled: tuple[RunningServer, Path], isolation: str
) -> None:
    server, root = controlled
    model = f"streaming_{isolation}"
    stream = Stream(server)
    try:
        stream.send(model, [1], "open")
        _, error = stream.results.get(timeout=60)  # a response: the stream is open
        assert error is None
        unload(server, model)
        assert "unloaded" in ended(stream, "open")
    finally:
        stream.close()
    assert logged(root / f"{model}.seen", "open ") == ["open cancelled"]
    assert reloaded_answers(server, model) == "final"


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("base", ["stepping", "stepping_streamed"], ids=["plain", "decoupled"])
def test_unloading_cancels_a_running_step_and_runs_no_step_after_it(
    controlled: tuple[RunningServer, Path], isolation: str, base: str
) -> None:
    server, root = controlled
    model = f"{base}_{isolation}"
    marker = root / f"{model}.seen"
    stream = Stream(server)
    try:
        stream.send(model, [1], "running")
        assert logged(marker, "step running")  # its first step runs until it is cancelled
        unload(server, model)  # waits for that step
        assert "unloaded" in ended(stream, "running")
    finally:
        stream.close()
    assert logged(marker, "running ") == ["running cancelled"]
    assert logged(marker, "step running") == ["step running"]  # the step it asked for: none
    assert reloaded_answers(server, model) == "final"


# ---- the OpenAI routes' streams --------------------------------------------------------------


def stream_body(route: str, model: str, prompt_id: str) -> dict[str, object]:
    """A streamed request of `route` whose prompt ends with `prompt_id` (the model logs it)."""
    if route == "/v1/completions":
        return {"model": model, "prompt": f"go {prompt_id}", "stream": True}
    messages = [{"role": "user", "content": f"go {prompt_id}"}]
    return {"model": model, "messages": messages, "stream": True}


def unloaded_openai(
    server: RunningServer, route: str, model: str, prompt_id: str, unload_it: Callable[[], None]
) -> str:
    """The `openai` client's stream, open when `unload_it` ran: the error it raised."""
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.http_port}/v1", api_key="unused", max_retries=0
    )
    chunks: Iterator[object]
    if route == "/v1/completions":
        chunks = iter(client.completions.create(model=model, prompt=f"go {prompt_id}", stream=True))
    else:
        message = {"role": "user", "content": f"go {prompt_id}"}
        chunks = iter(client.chat.completions.create(model=model, messages=[message], stream=True))
    next(chunks)  # a piece of text: the stream is open
    unload_it()
    with pytest.raises(openai.APIError) as raised:
        for _ in chunks:
            pass
    return raised.value.message


def unloaded_sse(
    server: RunningServer, route: str, model: str, prompt_id: str, unload_it: Callable[[], None]
) -> str:
    """The stream read as plain HTTP, open when `unload_it` ran: its error event's message,
    after checking that `[DONE]` and the end of the response follow it."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    try:
        connection.request("POST", route, json.dumps(stream_body(route, model, prompt_id)))
        response = connection.getresponse()
        assert response.status == 200
        events = (line[6:].strip() for line in response if line.startswith(b"data: "))
        assert b"error" not in next(events)  # a piece of text: the stream is open
        unload_it()
        after = [event for event in events if b"error" in event or event == b"[DONE]"]
        assert len(after) == 2  # then the response ended
        assert after[1] == b"[DONE]"
        error = json.loads(after[0])["error"]
        assert set(error) == {"message", "type", "param", "code"}
        return str(error["message"])
    finally:
        connection.close()


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("route", ["/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("unloaded", [unloaded_openai, unloaded_sse], ids=["openai", "sse"])
def test_an_openai_stream_open_when_its_model_is_unloaded_ends_with_an_error_event(
    controlled: tuple[RunningServer, Path],
    isolation: str,
    route: str,
    unloaded: Callable[[RunningServer, str, str, str, Callable[[], None]], str],
) -> None:
    server, root = controlled
    model = f"chatty_{isolation}"
    prompt_id = f"{unloaded.__name__}{route.replace('/', '-')}"
    message = unloaded(server, route, model, prompt_id, lambda: unload(server, model))
    assert "unloaded" in message
    assert logged(root / f"{model}.seen", f"{prompt_id} ") == [f"{prompt_id} cancelled"]
    load(server, model)
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.http_port}/v1", api_key="unused", max_retries=0
    )
    assert client.completions.create(model=model, prompt="once").choices[0].text == "z"
