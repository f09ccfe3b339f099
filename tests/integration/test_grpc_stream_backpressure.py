"""A slow gRPC reader of a fast decoupled model holds the model back, as over HTTP
(test_stream_backpressure.py): a `ModelStreamInfer` call's responses wait in a bounded
outbox, so the request stops taking responses from its channel and the model's sends block.
Read with tritonclient's gRPC stream, whose reader stops while the test holds its callback."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from inferd.core.responses import MAX_UNREAD
from inferd.frontends.grpc.stream import OUTBOX_LIMIT
from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually, rss_kib
from tests.integration.test_stream_backpressure import (
    FLOOD,
    FLOOD_CONFIG,
    IN_FLIGHT,
    PAYLOAD,
    index_of,
)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grpc_backpressure")
    write(root, "flood", FLOOD.format(payload=PAYLOAD), FLOOD_CONFIG.format(marker=root / "sent"))
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


def count_input(count: int) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("COUNT", [1], "INT32")
    tensor.set_data_from_numpy(np.array([count], np.int32))
    return tensor


def test_a_slow_grpc_reader_holds_a_decoupled_model_back(
    server: RunningServer, repository: Path
) -> None:
    sent = repository / "sent"
    count = 600  # 150 MiB if the server kept every unread response
    texts: queue.Queue[str | Exception] = queue.Queue()
    reading = threading.Event()

    def callback(result: grpcclient.InferResult | None, error: Exception | None) -> None:
        texts.put(error if result is None else result.as_numpy("TEXT")[0].decode())
        reading.wait(60)  # tritonclient reads the stream's next response after this returns

    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=callback)
    try:
        before = rss_kib(server)
        client.async_stream_infer("flood", [count_input(count)], request_id="flood")
        first = texts.get(timeout=60)
        assert isinstance(first, str), first
        assert index_of(first) == 0
        time.sleep(1.5)  # the reader stalls; an unbounded stream would take every response now
        eventually(lambda: sent.exists())
        assert int(sent.read_text()) <= 1 + MAX_UNREAD + OUTBOX_LIMIT + IN_FLIGHT
        assert rss_kib(server) - before < 64 * 1024
        reading.set()
        rest = [texts.get(timeout=60) for _ in range(count - 1)]
        assert [index_of(text) for text in rest] == list(range(1, count))  # type: ignore[arg-type]
    finally:
        reading.set()
        client.stop_stream()  # returns once the server ended the call: its end got through
        client.close()


def test_many_requests_behind_a_slow_reader_all_finish(
    server: RunningServer, repository: Path
) -> None:
    # More responses than the outbox holds, from more requests than the stream's window; the
    # reader is slow throughout. Every response arrives, in order per request.
    requests, count = 80, 3
    answers: queue.Queue[tuple[str, str] | Exception] = queue.Queue()

    def callback(result: grpcclient.InferResult | None, error: Exception | None) -> None:
        if result is None:
            answers.put(error if error is not None else RuntimeError("no result"))
            return
        answers.put((result.get_response().id, result.as_numpy("TEXT")[0].decode()))
        time.sleep(0.002)

    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=callback)
    try:
        for index in range(requests):
            client.async_stream_infer("flood", [count_input(count)], request_id=str(index))
        received: dict[str, list[int]] = {str(index): [] for index in range(requests)}
        for _ in range(requests * count):
            answer = answers.get(timeout=60)
            assert isinstance(answer, tuple), answer
            received[answer[0]].append(index_of(answer[1]))
        assert all(indexes == list(range(count)) for indexes in received.values())
    finally:
        client.stop_stream()
        client.close()
