"""Drive one step of load and time every request.

Everything runs on one event loop: N worker coroutines for a fixed concurrency (each sends
its next request as soon as the previous answer arrives), or one pacer for a fixed request
rate (sends on a constant schedule however slow the answers, as perf_analyzer does). The
requests are prepared beforehand; the loop only picks one, sends it and records the time.
A streamed request also records when each of its responses arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from inferd.bench.options import LoadMode
from inferd.bench.transport import StreamTransport, Transport

Send = Callable[[Any, "Tally"], Coroutine[Any, Any, None]]  # send one prepared request, record it


class Budget:
    """When a step ends: after `requests` sends, or once `duration_s` has passed."""

    def __init__(self, requests: int | None, duration_s: float | None) -> None:
        self._left = requests
        self._duration_s = duration_s or 0.0
        self._deadline = 0.0

    def start(self) -> None:
        self._deadline = time.perf_counter() + self._duration_s

    def take(self) -> bool:
        """Whether one more request may be sent (and count it if so)."""
        if self._left is None:
            return time.perf_counter() < self._deadline
        if self._left <= 0:
            return False
        self._left -= 1
        return True


@dataclass(slots=True)
class Tally:
    """What one step observed; read by the progress display while the step runs."""

    latencies_ns: list[int] = field(default_factory=list)  # send to full answer / stream end
    # Streams only, of successful requests: so responses = the sum of their response counts.
    ttft_ns: list[int] = field(default_factory=list)  # send to first response
    gaps_ns: list[int] = field(default_factory=list)  # between consecutive responses
    responses: int = 0
    errors: int = 0
    first_error: str = ""
    sent: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time over the step: is the client the bottleneck?

    @property
    def done(self) -> int:
        return len(self.latencies_ns) + self.errors

    def fail(self, error: BaseException) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{type(error).__name__}: {error}".strip()

    def add_stream(self, began_ns: int, arrivals_ns: list[int]) -> None:
        """One successful stream: sent at `began_ns`, its responses at `arrivals_ns`."""
        self.responses += len(arrivals_ns)
        if arrivals_ns:
            self.ttft_ns.append(arrivals_ns[0] - began_ns)
        self.gaps_ns.extend(later - earlier for earlier, later in pairwise(arrivals_ns))


def unary(transport: Transport) -> Send:
    async def send(request: Any, tally: Tally) -> None:
        tally.sent += 1
        began = time.perf_counter_ns()
        try:
            await transport.infer(request)
        except Exception as error:  # any failure of one request is a counted error, not a crash
            tally.fail(error)
        else:
            tally.latencies_ns.append(time.perf_counter_ns() - began)

    return send


def streamed(transport: StreamTransport) -> Send:
    async def send(request: Any, tally: Tally) -> None:
        tally.sent += 1
        arrivals: list[int] = []
        began = time.perf_counter_ns()
        try:
            async for _ in transport.stream(request):
                arrivals.append(time.perf_counter_ns())
        except Exception as error:  # an error mid-stream fails the whole request
            tally.fail(error)
        else:
            tally.latencies_ns.append(time.perf_counter_ns() - began)
            tally.add_stream(began, arrivals)

    return send


async def run_step(
    send: Send,
    prepared: list[Any],
    mode: LoadMode,
    load: float,
    budget: Budget,
    tally: Tally,
) -> None:
    """Run one step at `load` (concurrency or requests/s), filling `tally`."""
    start = time.perf_counter()
    cpu_start = time.process_time()
    budget.start()
    if mode == "concurrency":
        workers = int(load)
        await asyncio.gather(
            *(_worker(send, prepared, offset, budget, tally) for offset in range(workers))
        )
    else:
        await _paced(send, prepared, load, budget, tally)
    tally.elapsed_s = time.perf_counter() - start
    tally.cpu_s = time.process_time() - cpu_start


async def _worker(
    send: Send, prepared: list[Any], offset: int, budget: Budget, tally: Tally
) -> None:
    index = offset
    while budget.take():
        await send(prepared[index % len(prepared)], tally)
        index += 1


async def _paced(
    send: Send, prepared: list[Any], rate: float, budget: Budget, tally: Tally
) -> None:
    interval = 1.0 / rate
    start = time.perf_counter()
    in_flight: set[asyncio.Task[None]] = set()
    index = 0
    while True:
        delay = start + index * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if not budget.take():
            break
        task = asyncio.create_task(send(prepared[index % len(prepared)], tally))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        index += 1
    await asyncio.gather(*in_flight)
