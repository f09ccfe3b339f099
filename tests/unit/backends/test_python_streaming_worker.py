"""A decoupled model's worker process, seen from the server (`StreamingWorker`): the steps of
one iterative request share one key, and nothing of the request stays once it ended, also
when its client went away before its batch reached the worker, or when the server ended its
stream itself (freed as its reader leaves it, or by the next batch before that)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from inferd.backends.base import BatchRequest
from inferd.backends.python.api import ModelContext
from inferd.backends.python.isolated import IsolatedInstance
from inferd.backends.python.protocol import WorkerSetup
from inferd.backends.python.streaming_worker import StreamingWorker
from inferd.core.errors import Unavailable
from inferd.core.responses import ResponseChannel

# One response per execution; the final one when IN is 1.
MODEL = """
import numpy as np

class InferdModel:
    def execute(self, batch):
        request = batch.requests[0]
        last = int(request.inputs["IN"][0]) == 1
        request.sender.send({"OUT": np.full(4, 7, np.float32)}, final=last)
"""


# Logs whether it saw its request cancelled within 10 s (else it holds the instance so long).
WAITS_FOR_CANCEL = """
import time

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]

    def execute(self, batch):
        sender = batch.requests[0].sender
        deadline = time.monotonic() + 10
        while not sender.is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        with open(self.marker, "w") as marker:
            marker.write(f"cancelled={sender.is_cancelled()}")
"""


def isolated(tmp_path: Path, code: str, parameters: dict[str, str]) -> IsolatedInstance:
    """An instance of the decoupled model `code` in a worker process."""
    model_file = tmp_path / "1" / "model.py"
    model_file.parent.mkdir()
    model_file.write_text(code)
    context = ModelContext(
        "m", 1, tmp_path, model_file.parent, {}, parameters, "m_0", "cpu", "cpu", 0
    )
    setup = WorkerSetup(model_file, "streaming_worker_m", context, {"OUT": "FP32"}, False, True)
    return IsolatedInstance(setup, None, 1)


def test_an_iterative_requests_steps_share_one_stream_that_ends_with_it(tmp_path: Path) -> None:
    instance = isolated(tmp_path, MODEL, {})

    async def steps(count: int) -> list[bool]:
        channel = ResponseChannel()
        request = BatchRequest(0, 1, responses=channel)
        finals = []
        for step in range(count):
            inputs = {"IN": np.array([int(step == count - 1)], np.int64)}
            await asyncio.to_thread(instance.execute, inputs, ["OUT"], [request])
            item = await channel.get()
            assert item.outputs is not None
            assert item.outputs["OUT"].tolist() == [7.0] * 4
            finals.append(item.final)
        return finals

    try:
        assert asyncio.run(steps(20)) == [False] * 19 + [True]
        worker = instance._worker
        assert isinstance(worker, StreamingWorker)
        assert not worker._streams and not worker._by_channel
        assert next(worker._keys) == 1  # one key for the 20 steps
    finally:
        instance.close()


def test_a_request_cancelled_before_its_batch_ran_is_cancelled_for_the_model(
    tmp_path: Path,
) -> None:
    # Its client went away after the scheduler handed its batch to the instance: the
    # channel's cancellation came before the worker knew the request.
    marker = tmp_path / "seen"
    instance = isolated(tmp_path, WAITS_FOR_CANCEL, {"marker": str(marker)})

    async def cancelled_first() -> None:
        channel = ResponseChannel()
        channel.cancel()
        request = BatchRequest(0, 1, responses=channel)
        inputs = {"IN": np.array([0], np.int64)}
        await asyncio.to_thread(instance.execute, inputs, ["OUT"], [request])

    try:
        asyncio.run(cancelled_first())
        assert marker.read_text() == "cancelled=True"
        worker = instance._worker
        assert isinstance(worker, StreamingWorker)
        assert not worker._streams and not worker._by_channel
    finally:
        instance.close()


async def ended_by_the_server(instance: IsolatedInstance) -> ResponseChannel:
    """A request whose first step ran (no final response), then failed by the server, as the
    engine fails an iterative one that idled out; its reader has read the error."""
    channel = ResponseChannel()
    request = BatchRequest(0, 1, responses=channel)
    inputs = {"IN": np.array([0], np.int64)}  # not the last step: no final response
    await asyncio.to_thread(instance.execute, inputs, ["OUT"], [request])
    channel.send(error=Unavailable("idled out"))
    while (await channel.get()).error is None:
        pass
    return channel


def test_a_stream_the_server_ended_is_forgotten_when_its_reader_leaves(tmp_path: Path) -> None:
    instance = isolated(tmp_path, MODEL, {})

    async def reader_leaves() -> tuple[int, int]:
        channel = await ended_by_the_server(instance)
        worker = instance._worker
        assert isinstance(worker, StreamingWorker)
        before = len(worker._streams)
        channel.cancel()  # as `Engine.stream` does as it ends
        return before, len(worker._streams) + len(worker._by_channel)

    try:
        assert asyncio.run(reader_leaves()) == (1, 0)
    finally:
        instance.close()


def test_a_stream_the_server_ended_is_forgotten_by_the_next_batch(tmp_path: Path) -> None:
    # Its reader has not left it yet: the next batch sent finds it ended.
    instance = isolated(tmp_path, MODEL, {})

    async def next_batch() -> StreamingWorker:
        await ended_by_the_server(instance)
        worker = instance._worker
        assert isinstance(worker, StreamingWorker)
        assert len(worker._streams) == 1
        last = BatchRequest(0, 1, responses=ResponseChannel())
        await asyncio.to_thread(instance.execute, {"IN": np.array([1], np.int64)}, ["OUT"], [last])
        return worker

    try:
        worker = asyncio.run(next_batch())
        assert not worker._streams and not worker._by_channel
    finally:
        instance.close()
