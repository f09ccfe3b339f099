"""A Python model that opens a BLS stream to a decoupled model and closes it early (stops
reading and drops the iterator, or `cancel()`s it) cancels the called request: the called
model sees `is_cancelled()` and its one instance is free for the next call. Both isolation
modes, sync `exec` and `async_exec`."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.integration.infer_helpers import infer_inputs
from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server

# Sends a response every 10 ms until its request is cancelled (20 s at most), then notes in
# the file named by its `marker` parameter whether it saw the cancellation.
TICKER = """
import time
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]

    def execute(self, batch):
        sender = batch.requests[0].sender
        deadline = time.monotonic() + 20
        count = 0
        while not sender.is_cancelled() and time.monotonic() < deadline:
            sender.send({"OUT": np.array([count], np.int32)})
            count += 1
            time.sleep(0.01)
        with open(self.marker, "a") as marker:
            marker.write("cancelled\\n" if sender.is_cancelled() else "completed\\n")
        sender.close()
"""

# Opens a stream to `ticker`, reads two responses, then lets the stream go as its `how`
# parameter says (`drop`: stops reading and drops it; `cancel`: Triton's `cancel()`). Before
# returning, it waits (10 s at most) for the ticker to note how its request ended, and answers
# OUT = [responses read, 1 if the ticker saw its request cancelled else 0].
CALLER = """
import json
import time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        given = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.marker = given["marker"]
        self.how = given["how"]

    def call(self):
        return pb_utils.InferenceRequest(
            model_name="ticker",
            requested_output_names=["OUT"],
            inputs=[pb_utils.Tensor("IN", np.array([1], np.int32))],
        )

    def noted(self):
        try:
            with open(self.marker) as marker:
                return marker.read().splitlines()
        except FileNotFoundError:
            return []

    def read_two(self, responses):
        read = 0
        for response in responses:
            assert not response.has_error(), response.error().message()
            read += 1
            if read == 2:
                break
        if self.how == "cancel":
            responses.cancel()
        return read

    def answer(self, read, before):
        deadline = time.monotonic() + 10
        while len(self.noted()) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = self.noted()[before:] == ["cancelled"]
        out = np.array([read, int(seen)], np.int32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)])]

    EXECUTE
"""

SYNC_EXECUTE = """def execute(self, requests):
        before = len(self.noted())
        read = self.read_two(self.call().exec(decoupled=True))
        return self.answer(read, before)
"""

ASYNC_EXECUTE = """async def execute(self, requests):
        before = len(self.noted())
        read = self.read_two(await self.call().async_exec(decoupled=True))
        return self.answer(read, before)
"""

TICKER_CONFIG = """
name: "ticker"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters [
  {{ key: "isolation", value: {{ string_value: "{isolation}" }} }},
  {{ key: "marker", value: {{ string_value: "{marker}" }} }}
]
"""

CALLER_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 2 ] }} ]
parameters [
  {{ key: "isolation", value: {{ string_value: "{isolation}" }} }},
  {{ key: "marker", value: {{ string_value: "{marker}" }} }},
  {{ key: "how", value: {{ string_value: "{how}" }} }}
]
"""

CALLERS = [f"{how}_{kind}" for how in ("drop", "cancel") for kind in ("sync", "async")]


@pytest.fixture(scope="module", params=["none", "process"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    isolation: str = request.param
    root = tmp_path_factory.mktemp(f"bls_streams_{isolation}")
    marker = root / "ticker.seen"
    write(root, "ticker", TICKER, TICKER_CONFIG.format(isolation=isolation, marker=marker))
    for name in CALLERS:
        how, kind = name.split("_")
        execute = SYNC_EXECUTE if kind == "sync" else ASYNC_EXECUTE
        config = CALLER_CONFIG.format(name=name, isolation=isolation, marker=marker, how=how)
        write(root, name, CALLER.replace("EXECUTE", execute), config)
    with running_server(root) as running:
        yield running


@pytest.mark.parametrize("caller", CALLERS)
def test_closing_a_bls_stream_early_cancels_the_called_request(
    server: RunningServer, caller: str
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        # Twice: the second call needs the ticker's one instance, which the first call's
        # request holds for 20 s unless it was cancelled.
        for _ in range(2):
            arrays = {"IN": np.array([1], np.int32)}
            result = client.infer(caller, infer_inputs(grpcclient, arrays), timeout=60)
            assert result.as_numpy("OUT").tolist() == [2, 1]
    finally:
        client.close()
