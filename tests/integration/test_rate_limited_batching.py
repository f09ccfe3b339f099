"""With the rate limiter, a dynamic batch whose instance waits for its resources keeps
growing through the real server: requests sent while another model holds the resource run
as one batch once it is given back (model statistics: one execution, every inference)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually, metric

# Each execution marks that it started, then holds until the test creates `release`.
MODEL = """
import os
import time


class InferdModel:
    def initialize(self, context):
        self.folder = context.parameters["folder"]

    def execute(self, batch):
        open(os.path.join(self.folder, "holding"), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(self.folder, "release")):
            if time.monotonic() > deadline:
                raise RuntimeError("never released")
            time.sleep(0.01)
        return {"OUT": batch.inputs["IN"]}
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
{batching}
input [ {{ name: "IN", data_type: TYPE_FP32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU,
  rate_limiter {{ resources [ {{ name: "R", count: 1 }} ] }} }} ]
parameters [ {{ key: "folder", value: {{ string_value: "{folder}" }} }} ]
"""

SENT = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    root = tmp_path_factory.mktemp("growing")
    repository, folder = root / "models", root / "marks"
    folder.mkdir()
    models = (("holder", 0, ""), ("batched", 8, "dynamic_batching { }"))
    for name, max_batch_size, batching in models:
        config = CONFIG.format(
            name=name, max_batch_size=max_batch_size, batching=batching, folder=folder
        )
        write(repository, name, MODEL, config)
    flags = ("--rate-limit", "execution_count", "--rate-limit-resource", "R:1")
    with running_server(repository, *flags) as running:
        yield running, folder


def infer(server: RunningServer, name: str, value: float) -> float:
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
    try:
        shape = [1] if name == "holder" else [1, 1]
        tensor = httpclient.InferInput("IN", shape, "FP32")
        tensor.set_data_from_numpy(np.full(shape, value, dtype=np.float32))
        return float(client.infer(name, [tensor]).as_numpy("OUT").flat[0])
    finally:
        client.close()


def statistics(server: RunningServer, name: str) -> tuple[int, int]:
    """The model's (execution_count, inference_count)."""
    url = f"http://{server.http_url}/v2/models/{name}/stats"
    with urllib.request.urlopen(url, timeout=10) as answer:
        stats = json.load(answer)["model_stats"][0]
    return int(stats["execution_count"]), int(stats["inference_count"])


def test_requests_sent_while_the_resource_is_held_run_as_one_batch(
    server: tuple[RunningServer, Path],
) -> None:
    running, folder = server
    with ThreadPoolExecutor(SENT + 1) as pool:
        held = pool.submit(infer, running, "holder", -1.0)
        eventually(lambda: (folder / "holding").exists())
        answers = [pool.submit(infer, running, "batched", float(i)) for i in range(SENT)]
        # Every request has reached the server and waits, queued or in the waiting batch.
        eventually(lambda: metric(running, "nv_inference_pending_request_count", "batched") == SENT)
        (folder / "release").touch()
        assert held.result() == -1.0
        assert [answer.result() for answer in answers] == [float(i) for i in range(SENT)]
    assert statistics(running, "batched") == (1, SENT)
