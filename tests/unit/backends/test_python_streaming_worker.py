"""A decoupled model's worker process, seen from the server (`StreamingWorker`): the steps of
one iterative request share one key, and nothing of the request stays once it ended."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from inferd.backends.base import BatchRequest
from inferd.backends.python.api import ModelContext
from inferd.backends.python.isolated import IsolatedInstance
from inferd.backends.python.protocol import WorkerSetup
from inferd.backends.python.streaming_worker import StreamingWorker
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


def test_an_iterative_requests_steps_share_one_stream_that_ends_with_it(tmp_path: Path) -> None:
    model_file = tmp_path / "1" / "model.py"
    model_file.parent.mkdir()
    model_file.write_text(MODEL)
    context = ModelContext("m", 1, tmp_path, model_file.parent, {}, {}, "m_0", "cpu", "cpu", 0)
    setup = WorkerSetup(model_file, "streaming_worker_m", context, {"OUT": "FP32"}, False, True)
    instance = IsolatedInstance(setup, None, 1)

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
