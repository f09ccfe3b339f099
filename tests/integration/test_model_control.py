"""Model control modes over HTTP: explicit load/unload, refusals, and poll mode while serving."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.integration.http_helpers import post_json, request
from tests.integration.server import RunningServer, running_server


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def index(server: RunningServer) -> dict[str, dict[str, str]]:
    status, rows = post_json(server.http_port, "/v2/repository/index", {})
    assert status == 200
    return {row["name"]: row for row in rows}


def control(server: RunningServer, model: str, action: str, body: object = None) -> tuple[int, str]:
    path = f"/v2/repository/models/{quote(model, safe='')}/{action}"
    payload = None if body is None else json.dumps(body)
    status, _, answer = request(server.http_port, "POST", path, payload)
    return status, json.loads(answer)["error"] if answer else ""


@pytest.fixture(scope="module")
def explicit(model_repository: Path) -> Iterator[RunningServer]:
    args = ("--model-control-mode", "explicit", "--load-model", "simple", "--log-verbose", "1")
    with running_server(model_repository, *args) as server:
        yield server


def test_explicit_mode_loads_only_what_was_named(explicit: RunningServer) -> None:
    client = httpclient.InferenceServerClient(explicit.http_url)
    assert client.is_model_ready("simple")
    assert not client.is_model_ready("mlp")
    assert index(explicit)["mlp"]["state"] == "UNKNOWN"


def test_explicit_load_infer_and_unload(explicit: RunningServer) -> None:
    client = httpclient.InferenceServerClient(explicit.http_url)
    client.load_model("mlp")
    assert client.is_model_ready("mlp")
    inputs = [httpclient.InferInput("input", [2, 8], "FP32")]
    inputs[0].set_data_from_numpy(np.ones((2, 8), dtype=np.float32))
    assert client.infer("mlp", inputs).as_numpy("output").shape == (2, 4)

    client.unload_model("mlp")
    assert not client.is_model_ready("mlp")
    assert index(explicit)["mlp"] == {"name": "mlp", "state": "UNAVAILABLE", "reason": "unloaded"}
    assert client.is_server_ready()  # an unloaded model does not make the server unready
    assert client.is_model_ready("simple")


def test_explicit_load_with_config_override(explicit: RunningServer) -> None:
    client = httpclient.InferenceServerClient(explicit.http_url)
    override = {"max_batch_size": 2}  # the rest is auto-completed from the model file
    client.load_model("mlp", config=json.dumps(override))
    assert client.get_model_config("mlp")["max_batch_size"] == 2
    inputs = [httpclient.InferInput("input", [3, 8], "FP32")]
    inputs[0].set_data_from_numpy(np.ones((3, 8), dtype=np.float32))
    with pytest.raises(httpclient.InferenceServerException, match="batch"):
        client.infer("mlp", inputs)  # 3 rows > the overridden max_batch_size
    client.unload_model("mlp")


def test_explicit_mode_bad_requests(explicit: RunningServer) -> None:
    status, message = control(explicit, "missing", "load")
    assert status == 404 and "missing" in message
    for name in ("../x", "a/b", ".hidden"):
        status, message = control(explicit, name, "load")
        assert status == 400 and "invalid model name" in message, (name, status, message)
    status, message = control(explicit, "mlp", "load", {"parameters": {"config": "{not json"}})
    assert status == 400 and "config" in message
    bad = {"parameters": {"config": json.dumps({"max_batch_size": "many"})}}
    status, message = control(explicit, "mlp", "load", bad)
    assert status == 400 and "max_batch_size" in message
    # Files in a load request are off unless the server is started to accept them (#16).
    status, message = control(
        explicit, "mlp", "load", {"parameters": {"file:1/model.onnx": "AAAA"}}
    )
    assert status == 400 and "--allow-model-load-files" in message
    status, _ = control(explicit, "mlp", "restart")
    assert status == 404
    status, message = control(explicit, "missing", "unload")
    assert status == 404
    # Still serving.
    assert httpclient.InferenceServerClient(explicit.http_url).is_model_ready("simple")


def test_explicit_mode_logs_request_traces(explicit: RunningServer) -> None:
    client = httpclient.InferenceServerClient(explicit.http_url)
    inputs = [httpclient.InferInput(f"INPUT{i}", [1, 16], "INT32") for i in range(2)]
    for item in inputs:
        item.set_data_from_numpy(np.zeros((1, 16), dtype=np.int32))
    client.infer("simple", inputs)
    wait_for(lambda: "request model=simple version=1 ok" in explicit.log_text())
    line = next(x for x in explicit.log if "request model=simple version=1 ok" in x)
    for field in ("total_us=", "queue=", "compute_input=", "compute_infer=", "compute_output="):
        assert field in line


def test_load_and_unload_are_refused_outside_explicit_mode(server: RunningServer) -> None:
    for action in ("load", "unload"):
        status, message = control(server, "simple", action)
        assert status == 501 and "explicit" in message
    assert httpclient.InferenceServerClient(server.http_url).is_model_ready("simple")


class Traffic:
    """Client threads that keep inferring on one model each, counting successes and failures."""

    def __init__(self, url: str, models: list[str]) -> None:
        self.url = url
        self.done = {m: 0 for m in models}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(m,)) for m in models]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, model: str) -> None:
        client = httpclient.InferenceServerClient(self.url)
        try:
            self._send_until_stopped(client, model)
        finally:
            client.close()  # in this thread: tritonclient.http's gevent pool belongs to it

    def _send_until_stopped(self, client: httpclient.InferenceServerClient, model: str) -> None:
        while not self._stop.is_set():
            try:
                if model == "mlp":
                    inputs = [httpclient.InferInput("input", [1, 8], "FP32")]
                    inputs[0].set_data_from_numpy(np.ones((1, 8), dtype=np.float32))
                else:
                    inputs = [httpclient.InferInput(f"INPUT{i}", [1, 16], "INT32") for i in (0, 1)]
                    for item in inputs:
                        item.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
                client.infer(model, inputs)
                self.done[model] += 1
            except Exception as exc:  # every failure is what this test looks for
                self.failures.append(f"{model}: {exc}")


def test_poll_mode_follows_the_repository_without_failing_a_request(
    model_repository: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(model_repository, repository)
    args = ("--model-control-mode", "poll", "--repository-poll-secs", "0.2")
    with running_server(repository, *args) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        with Traffic(server.http_url, ["simple", "mlp"]) as traffic:
            # Add a model.
            added = repository / "added"
            shutil.copytree(repository / "simple", added)
            config = (added / "config.pbtxt").read_text()
            (added / "config.pbtxt").write_text(config.replace('"simple"', '"added"'))
            wait_for(lambda: client.is_model_ready("added"))

            # Change a model under traffic: a new version folder is served instead of 1.
            shutil.copytree(repository / "simple" / "1", repository / "simple" / "2")
            wait_for(lambda: client.get_model_metadata("simple")["versions"] == ["2"])

            # Change its config under traffic: serve every version.
            config = (repository / "simple" / "config.pbtxt").read_text()
            policy = "version_policy: { all: {} }\n"
            (repository / "simple" / "config.pbtxt").write_text(config + policy)
            wait_for(lambda: client.get_model_metadata("simple")["versions"] == ["1", "2"])

            # Remove a model.
            shutil.rmtree(added)
            wait_for(lambda: not client.is_model_ready("added"))
            served = dict(traffic.done)
        assert traffic.failures == []
        assert min(served.values()) > 0, served
        assert "added" not in index(server)
        assert client.is_server_ready()
