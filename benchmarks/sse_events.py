"""The event loop's CPU per event of `generate_stream`'s answer (`send_event_stream`), alone.

    python benchmarks/sse_events.py [--streams 38] [--steps 3000]

`--streams` answers run side by side, as in an iterative model's running batch: each step
releases one int32 token per stream at once (a future per response, as a channel's read),
and each answer encodes its response and sends its event to an ASGI `send` that writes
nowhere. Printed: the loop's CPU time per event (what the HTTP frontend's SSE path costs per
token in Python, without uvicorn's write and without the engine's stream).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import uvloop

from inferd.core.types import InferResponse
from inferd.frontends.http.sse import send_event_stream


async def tokens(
    row: int, steps: int, waiters: list[asyncio.Future[None]]
) -> AsyncIterator[InferResponse]:
    """Stream `row`'s responses, one per step, each once its step's future is resolved."""
    token = np.array([row], np.int32)
    for step in range(steps):
        waiters[row] = asyncio.get_running_loop().create_future()
        await waiters[row]
        yield InferResponse("m", "1", {"TOKEN": token}, f"{row}-0", final=step + 1 == steps)


async def nowhere(_: dict[str, Any]) -> None:
    pass


async def per_event_us(streams: int, steps: int) -> float:
    loop = asyncio.get_running_loop()
    waiters: list[asyncio.Future[None]] = [loop.create_future() for _ in range(streams)]
    answers = [
        asyncio.ensure_future(send_event_stream(nowhere, tokens(row, steps, waiters)))
        for row in range(streams)
    ]
    await asyncio.sleep(0)
    start = time.process_time()
    for _ in range(steps):
        for waiter in waiters:
            waiter.set_result(None)
        for _ in range(2):  # every answer sends its event and waits for its next response
            await asyncio.sleep(0)
    await asyncio.gather(*answers)
    return (time.process_time() - start) / (streams * steps) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=38)
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    print(f"{uvloop.run(per_event_us(args.streams, args.steps)):.2f} us of CPU per event")


if __name__ == "__main__":
    main()
