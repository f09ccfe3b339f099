"""A decoupled model in a worker process: one request whose client does not read holds back
only itself. The worker's responses for every request share one pipe; the server's reader of
that pipe queues the slow request's responses instead of waiting for its client, and the
worker holds that request's sends (its sending thread waits) until the client reads again, so
the other requests of the same worker keep streaming and the server's memory stays bounded.
Read with tritonclient's gRPC streaming, one stream per client."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from inferd.backends.python.streaming_worker import OVERFLOW_LIMIT
from inferd.core.responses import MAX_UNREAD
from inferd.frontends.grpc.stream import OUTBOX_LIMIT
from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import rss_kib
from tests.integration.test_stream_backpressure import IN_FLIGHT, PAYLOAD, index_of, settled

# Each request: COUNT responses of PAYLOAD characters, sent as fast as it can from a thread of
# its own (so the instance takes the next request at once); notes how many it has sent so far
# in a file named by the request's id.
FLOOD = """
import os
import threading
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.folder = context.parameters["folder"]

    def execute(self, batch):
        request = batch.requests[0]
        threading.Thread(target=self.flood, args=(request,), daemon=True).start()

    def flood(self, request):
        count = int(request.inputs["COUNT"][0])
        for index in range(count):
            text = str(index).encode().ljust({payload}, b".")
            last = index == count - 1
            if not request.sender.send({{"TEXT": np.array([text], dtype=object)}}, final=last):
                return
            with open(os.path.join(self.folder, request.id), "w") as marker:
                marker.write(str(index + 1))
"""

CONFIG = """
name: "flood"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "COUNT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters [
  {{ key: "isolation", value: {{ string_value: "process" }} }},
  {{ key: "folder", value: {{ string_value: "{folder}" }} }}
]
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flood_sent")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("slow_stream")
    write(root, "flood", FLOOD.format(payload=PAYLOAD), CONFIG.format(folder=folder))
    with running_server(root) as running:
        yield running


class Reader:
    """One client and its stream; its callback stops reading after `reads` responses until
    `resume` (tritonclient reads the stream's next response once the callback returns)."""

    def __init__(self, server: RunningServer, reads: int | None = None) -> None:
        self.texts: queue.Queue[str | Exception] = queue.Queue()
        self._reads = reads
        self._reading = threading.Event()
        self.client = grpcclient.InferenceServerClient(server.grpc_url)
        self.client.start_stream(callback=self._callback)

    def _callback(self, result: grpcclient.InferResult | None, error: Exception | None) -> None:
        self.texts.put(error if result is None else result.as_numpy("TEXT")[0].decode())
        if self._reads is not None and self.texts.qsize() >= self._reads:
            self._reading.wait(120)

    def ask(self, count: int, request_id: str) -> None:
        tensor = grpcclient.InferInput("COUNT", [1], "INT32")
        tensor.set_data_from_numpy(np.array([count], np.int32))
        self.client.async_stream_infer("flood", [tensor], request_id=request_id)

    def indexes(self, count: int) -> list[int]:
        texts = [self.texts.get(timeout=60) for _ in range(count)]
        assert all(isinstance(text, str) for text in texts), texts
        return [index_of(text) for text in texts]  # type: ignore[arg-type]

    def resume(self) -> None:
        self._reading.set()

    def close(self) -> None:
        self.resume()
        self.client.stop_stream()
        self.client.close()


def test_a_client_that_does_not_read_holds_back_only_its_own_stream(
    server: RunningServer, folder: Path
) -> None:
    def sent(request_id: str) -> int:
        marker = folder / request_id
        return int(marker.read_text() or 0) if marker.exists() else 0

    warm = Reader(server)  # threads and buffers of a first stream
    warm.ask(40, "warm")
    assert warm.indexes(40) == list(range(40))
    warm.close()
    slow, fast = Reader(server, reads=1), Reader(server)
    try:
        before = rss_kib(server)
        count = 600  # 150 MiB if the server kept every unread response
        slow.ask(count, "slow")
        assert slow.indexes(1) == [0]
        time.sleep(1.0)  # its client stalls: its model's sends pile up, then wait
        # Every response of the other request arrives while the first is not read: more than
        # the slow one could have sent meanwhile, so it did not wait for the slow client.
        fast.ask(count, "fast")
        assert fast.indexes(count) == list(range(count))
        # In the channel, the stream's outbox, in flight to the client, and those the worker
        # sent before it was told to hold them (at most OVERFLOW_LIMIT bytes).
        held = settled(lambda: sent("slow"))
        assert held <= 1 + MAX_UNREAD + OUTBOX_LIMIT + IN_FLIGHT + OVERFLOW_LIMIT // PAYLOAD < count
        assert rss_kib(server) - before < (OVERFLOW_LIMIT >> 10) + 32 * 1024
        slow.resume()
        assert slow.indexes(count - 1) == list(range(1, count))
    finally:
        slow.close()
        fast.close()
