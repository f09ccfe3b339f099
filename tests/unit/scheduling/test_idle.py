"""With batching off, on instances that do not stage (`Stages`: those have no workers, see
test_relay.py), a request that finds an instance idle runs on it in its caller's task; the
instance's worker waits for it to come back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest

from inferd.backends.base import BatchRequest
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array, Timestamps
from inferd.instances.instance import ExecutionResult, ModelInstance
from inferd.scheduling.dynamic import DynamicBatcher
from tests.unit.scheduling.fakes import Doubler, instances, request, settings
from tests.unit.scheduling.test_dynamic import batcher, run


class Counted:
    """An instance that counts the batches handed to it at once: at most its
    `pipeline_depth` (one) is what a scheduler promises."""

    pipeline_depth = 1

    def __init__(self, instance: ModelInstance) -> None:
        self._instance = instance
        self.name = instance.name
        self.device = instance.device
        self._running = 0
        self.most = 0

    async def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        started: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        self._running += 1
        self.most = max(self.most, self._running)
        try:
            return await self._instance.execute(inputs, output_names, requests)
        finally:
            self._running -= 1

    def close(self) -> None:
        self._instance.close()


def test_a_request_on_an_idle_instance_is_answered_from_its_own_task() -> None:
    async def scenario() -> None:
        delivered_by: list[str] = []

        def on_batch(
            rows: int, compute: Timestamps, instance: str, calls: object, padding: int
        ) -> None:
            task = asyncio.current_task()
            assert task is not None
            delivered_by.append(task.get_name())

        counted = Counted(instances(Doubler())[0])
        scheduler = DynamicBatcher([counted], settings(), ["y"], on_batch)
        scheduler.start()
        try:
            await asyncio.sleep(0.01)  # the worker waits for work
            caller = asyncio.ensure_future(scheduler.submit(request(1.0)))
            caller.set_name("caller")
            result = await caller
            np.testing.assert_array_equal(result["y"], np.full((1, 4), 2.0))
        finally:
            await scheduler.stop()
            counted.close()
        assert delivered_by == ["caller"]

    run(scenario)


def test_a_worker_whose_instance_is_lent_waits_for_it() -> None:
    async def scenario() -> None:
        backend = Doubler(gate=threading.Event())
        executions: list[int] = []

        def on_batch(
            rows: int, compute: Timestamps, instance: str, calls: object, padding: int
        ) -> None:
            executions.append(rows)

        counted = Counted(instances(backend)[0])
        scheduler = DynamicBatcher([counted], settings(), ["y"], on_batch)
        scheduler.start()
        try:
            await asyncio.sleep(0.01)
            lent = asyncio.ensure_future(scheduler.submit(request(0)))
            await asyncio.sleep(0.01)  # running on the instance, which is not idle any more
            queued = [asyncio.ensure_future(scheduler.submit(request(v))) for v in (1, 2)]
            await asyncio.sleep(0.05)
            assert scheduler.pending() == 2  # the worker takes nothing while its instance is lent
            assert backend.gate is not None
            backend.gate.set()
            results = await asyncio.gather(lent, *queued)
        finally:
            await scheduler.stop()
            counted.close()
        for value, result in zip((0, 1, 2), results, strict=True):
            np.testing.assert_array_equal(result["y"], np.full((1, 4), 2.0 * value))
        assert counted.most == 1
        assert backend.batches == [[0], [1], [2]]
        assert executions == [1, 1, 1]

    run(scenario)


def test_a_cancelled_caller_gives_the_instance_back() -> None:
    async def scenario() -> None:
        backend = Doubler(gate=threading.Event())
        async with batcher(settings(), backend) as scheduler:
            await asyncio.sleep(0.01)
            gone = asyncio.ensure_future(scheduler.submit(request(0)))
            await asyncio.sleep(0.01)
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            assert backend.gate is not None
            backend.gate.set()
            result = await asyncio.wait_for(scheduler.submit(request(3)), 5)
        np.testing.assert_array_equal(result["y"], np.full((1, 4), 6.0))

    run(scenario)


def test_a_refused_input_fails_its_request_and_the_instance_serves_on() -> None:
    async def scenario() -> None:
        async with batcher(settings(), Doubler(refuse=frozenset({-1.0}))) as scheduler:
            await asyncio.sleep(0.01)
            with pytest.raises(InvalidArgument, match="refused"):
                await scheduler.submit(request(-1.0))
            result = await asyncio.wait_for(scheduler.submit(request(2.0)), 5)
        np.testing.assert_array_equal(result["y"], np.full((1, 4), 4.0))

    run(scenario)
