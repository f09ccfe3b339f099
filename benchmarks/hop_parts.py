"""What the Ray hop benchmarks share: the bare echo actor, the timing loop and the sizes.
Ray is not imported here, so a script can set Ray's environment before it imports Ray."""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

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


async def sweep(
    paths: Callable[[dict[str, Any]], dict[str, Callable[[], Awaitable[object]]]],
    sizes: list[int],
    seconds: float,
    rounds: int,
) -> None:
    """Time each path at each payload size, the rounds interleaved, and print p50/p99."""
    rows: dict[tuple[int, str], list[float]] = {}
    for _ in range(rounds):
        for kib in sizes:
            for label, call in paths({"INPUT0": np.ones((1, kib * 256), np.float32)}).items():
                rows.setdefault((kib, label), []).extend(await timed(call, seconds / rounds))
    width = max(len(label) for _, label in rows)
    print(f"{'payload':>8}  {'path':<{width}} {'batches':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for (kib, label), samples in rows.items():
        p50, p99 = np.percentile(samples, [50, 99]) * 1000
        print(f"{kib:>5} KiB  {label:<{width}} {len(samples):>8} {p50:>8.3f} {p99:>8.3f}")


def sweep_arguments(doc: str | None) -> argparse.ArgumentParser:
    """A parser with the sweep's options, described by the first paragraph of `doc`."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per point, all rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES_KIB), help="KiB")
    return parser
