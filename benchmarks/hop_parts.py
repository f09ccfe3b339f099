"""What the Ray hop benchmarks share: the bare echo actor, the timing loop and the sizes.
Ray is not imported here, so a script can set Ray's environment before it imports Ray."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from inferd.backends.base import BatchRequest
from inferd.cluster.wire import PackedAnswer, PackedBatch, pack_answer, unpack_batch

SIZES_KIB = (1, 64, 4096)
OBJECT_STORE_BYTES = 80 * 1024 * 1024


class Echo:
    """The bare actor: returns what it is given, in each of the forms below."""

    def echo(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return inputs

    def as_arrays(
        self, inputs: dict[str, Any], output_names: list[str], requests: list[BatchRequest]
    ) -> tuple[dict[str, Any], int, str]:
        return {"OUTPUT0": inputs["INPUT0"]}, 0, "incarnation"

    def packed(self, batch: PackedBatch) -> PackedAnswer:
        inputs, _, _ = unpack_batch(batch)
        return pack_answer({"OUTPUT0": inputs["INPUT0"]}, 0, "incarnation")


async def timed(call: Callable[[], Awaitable[object]], seconds: float) -> list[float]:
    for _ in range(10):
        await call()
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples
