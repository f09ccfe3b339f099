"""The iterative scheduler's own work per step on the event loop, in-process.

    python benchmarks/iterative_loop.py [--requests 33] [--steps 1500] [--runs 7]

`--requests` requests of `--steps` steps each run in one running batch, on an
`IterativeBatcher` and a `ModelInstance` as the server builds them, with a backend that only
counts (no model work, no response channels). Printed: the event-loop thread's CPU time per
step (delivering a step, queuing the requests handed back, forming and handing over the next
step), the median and the least over `--runs` runs. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.model_config import parse_pbtxt
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import ModelInstance
from inferd.scheduling.iterative import IterativeBatcher
from inferd.scheduling.sequence_settings import SequenceSettings

CONFIG = """
name: "m"
max_batch_size: {rows}
input [ {{ name: "x", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "y", data_type: TYPE_INT32, dims: [ 1 ] }} ]
sequence_batching {{ iterative_sequence: true }}
"""


class Counting:
    """Hands each request back until it made the steps its x asks for."""

    def __init__(self) -> None:
        self.steps = 0
        self._made: dict[object, int] = {}

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        self.steps += 1
        wanted = inputs["x"].reshape(-1)
        for row, request in enumerate(requests):
            key = request.parameters["sequence_id"]
            made = self._made[key] = self._made.get(key, 0) + 1
            request.rescheduled = bool(made < wanted[row])
        return {"y": inputs["x"]}

    def close(self) -> None:
        pass


async def loop_cpu_per_step_us(requests: int, steps: int) -> float:
    settings = SequenceSettings.from_config(parse_pbtxt(CONFIG.format(rows=requests)), Path("."))
    backend = Counting()
    instance = ModelInstance("m_0", Device(DeviceKind.CPU), backend)
    scheduler = IterativeBatcher([instance], settings, ["y"])
    scheduler.start()
    asked = [InferRequest("m", {"x": np.array([[steps]], dtype=np.int32)}) for _ in range(requests)]
    start = time.thread_time()
    await asyncio.gather(*(scheduler.submit(request) for request in asked))
    spent = time.thread_time() - start
    await scheduler.stop()
    instance.close()
    return spent / backend.steps * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=33)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    runs = [await loop_cpu_per_step_us(args.requests, args.steps) for _ in range(args.runs)]
    print(
        f"event-loop CPU per step ({args.requests} rows): median {statistics.median(runs):.1f} "
        f"us, least {min(runs):.1f} us over {args.runs} runs"
    )


if __name__ == "__main__":
    asyncio.run(main())
