"""The iterative batcher against a counting backend: requests join and leave the running batch
between steps, state stays with each request, the backlog, cancellation, unloading and bad
requests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import ModelInstance
from inferd.scheduling.iterative import IterativeBatcher
from tests.unit.scheduling.test_sequence import CORRID, STATE, sequence_settings, synchronous


class Counter:
    """y = S_OUT = S_IN + 1: one more step made; a request is handed back until y reaches its
    x. Records each step's CORRID values; `gate` holds executions back."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.steps: list[list[int]] = []

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        if self.gate is not None:
            self.gate.wait(10)
        self.steps.append([int(key) for key in inputs["CORRID"].reshape(-1)])
        count = inputs["S_IN"] + 1  # [rows, 1], or [1] without a batch axis
        made, wanted = count.reshape(-1), inputs["x"].reshape(-1)
        for row, request in enumerate(requests):
            request.rescheduled = bool(made[row] < wanted[row])
        return {"y": count, "S_OUT": count}

    def close(self) -> None:
        pass


def iterative(
    max_batch_size: int = 4,
    gate: threading.Event | None = None,
    parameters: Mapping[str, str] | None = None,
) -> tuple[IterativeBatcher, Counter]:
    """`parameters`: the model's config `parameters`."""
    controls = f"iterative_sequence: true, control_input [ {CORRID.lstrip(',')} ] {STATE}"
    entries = " ".join(
        f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}'
        for key, value in (parameters or {}).items()
    )
    if entries:  # after sequence_batching's brace; the template's closing brace ends the last
        controls += "} " + entries[:-1]
    settings = sequence_settings(max_batch_size=max_batch_size, extra=controls)
    backend = Counter(gate)
    scheduler = IterativeBatcher(
        [ModelInstance("m_0", Device(DeviceKind.CPU), backend)], settings, ["y"]
    )
    scheduler.start()
    return scheduler, backend


def steps(count: int, **parameters: object) -> InferRequest:
    return InferRequest("m", {"x": np.array([[count]], dtype=np.int32)}, parameters=parameters)


@synchronous
async def test_a_later_short_request_joins_the_running_batch_and_finishes_first() -> None:
    scheduler, backend = iterative()
    finished: list[int] = []

    async def run(count: int) -> None:
        outputs = await scheduler.submit(steps(count))
        assert list(outputs) == ["y"] and int(outputs["y"][0, 0]) == count  # its own state
        finished.append(count)

    long = asyncio.create_task(run(5000))
    await asyncio.sleep(0.01)
    await asyncio.gather(run(3), run(5), long)
    assert finished == [3, 5, 5000]
    seen = backend.steps
    assert max(len(step) for step in seen) == 3  # three requests in one step
    assert len({key for step in seen for key in step}) == 3  # a fresh correlation id each
    await scheduler.stop()


@synchronous
async def test_requests_beyond_the_running_batch_wait_in_the_backlog() -> None:
    gate = threading.Event()
    scheduler, backend = iterative(max_batch_size=0, gate=gate)
    first = asyncio.create_task(scheduler.submit(steps(2)))
    second = asyncio.create_task(scheduler.submit(steps(2)))
    await asyncio.sleep(0.01)
    assert scheduler.pending() == 1  # the second waits for the only slot
    gate.set()
    await asyncio.gather(first, second)
    assert [len(step) for step in backend.steps] == [1, 1, 1, 1]
    await scheduler.stop()


@synchronous
async def test_a_cancelled_request_stops_and_frees_its_slot() -> None:
    scheduler, backend = iterative(max_batch_size=0)
    forever = asyncio.create_task(scheduler.submit(steps(10**9)))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(scheduler.submit(steps(2)))
    await asyncio.sleep(0.01)
    forever.cancel()
    outputs = await asyncio.wait_for(waiting, 10)
    assert int(outputs["y"].reshape(-1)[0]) == 2
    keys = [step[0] for step in backend.steps]
    assert keys[0] not in keys[-2:]  # the last two steps are the waiting request's
    await scheduler.stop()


@synchronous
async def test_unloading_fails_running_and_waiting_requests() -> None:
    scheduler, _ = iterative(max_batch_size=0)
    running = asyncio.create_task(scheduler.submit(steps(10**9)))
    waiting = asyncio.create_task(scheduler.submit(steps(1)))
    await asyncio.sleep(0.05)
    await scheduler.stop()
    for task in (running, waiting):
        with pytest.raises(Unavailable, match="unloaded"):
            await task
    with pytest.raises(Unavailable, match="unloaded"):
        await scheduler.submit(steps(1))


@synchronous
async def test_bad_requests_are_refused() -> None:
    gate = threading.Event()
    scheduler, _ = iterative(gate=gate)
    two_rows = InferRequest("m", {"x": np.array([[1], [2]], dtype=np.int32)})
    with pytest.raises(InvalidArgument, match="batch-size 1"):
        await scheduler.submit(two_rows)
    named = asyncio.create_task(scheduler.submit(steps(1, sequence_id=7)))
    await asyncio.sleep(0.01)
    with pytest.raises(InvalidArgument, match="still running"):
        await scheduler.submit(steps(1, sequence_id=7))
    with pytest.raises(InvalidArgument, match="integer or a string"):
        await scheduler.submit(steps(1, sequence_id=1.5))
    gate.set()
    await named
    await scheduler.stop()
