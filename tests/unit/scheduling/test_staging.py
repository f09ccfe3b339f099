"""With batching off, the next request waits on its instance while one runs (`relay.py`):
order, errors, one batch at a time per instance, cancellation while it waits, pending counts
and compute marks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import numpy as np
import pytest

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array, InferRequest, Timestamps
from inferd.instances.instance import ModelInstance
from inferd.scheduling.batch import BatchCallback
from inferd.scheduling.dynamic import DynamicBatcher
from inferd.scheduling.dynamic_settings import BatchingSettings
from tests.unit.scheduling.fakes import request, settings
from tests.unit.scheduling.test_dynamic import run
from tests.unit.scheduling.test_lease import Watched


class Held(Watched):
    """A `Watched` doubler whose request with a value in `holds` runs only once its event is
    set (-1 is refused); `ran` is the order values ran in."""

    def __init__(self, holds: Sequence[float] = ()) -> None:
        super().__init__()
        self.holds = {value: threading.Event() for value in holds}

    @property
    def ran(self) -> list[float]:
        return [batch[0] for batch in self.batches]

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest] = (),
    ) -> dict[str, Array]:
        hold = self.holds.get(float(inputs["x"][0, 0]))
        if hold is not None:
            hold.wait(10)
        return super().execute(inputs, output_names, requests)

    def release(self) -> None:
        for event in self.holds.values():
            event.set()


@asynccontextmanager
async def batcher(
    backends: Sequence[Held], config: BatchingSettings, on_batch: BatchCallback | None = None
) -> AsyncIterator[tuple[DynamicBatcher, list[ModelInstance]]]:
    """A started batcher on an instance of each of `backends`; after the block the backends
    let go of what they hold, the batcher stops and its instances close."""
    models = [
        ModelInstance(f"m_{i}", Device(DeviceKind.CPU), backend)
        for i, backend in enumerate(backends)
    ]
    scheduler = DynamicBatcher(models, config, ["y"], on_batch)
    scheduler.start()
    try:
        yield scheduler, models
    finally:
        for backend in backends:
            backend.release()
        await scheduler.stop()
        for model in models:
            model.close()


@asynccontextmanager
async def staged(
    *backends: Held, batches: list[Timestamps] | None = None
) -> AsyncIterator[tuple[DynamicBatcher, list[ModelInstance]]]:
    def on_batch(
        rows: int, compute: Timestamps, instance: str, calls: object, padding: int
    ) -> None:
        if batches is not None:
            batches.append(compute)

    async with batcher(backends, settings(), on_batch) as running:
        yield running


def values(count: int) -> list[InferRequest]:
    return [request(value) for value in range(count)]


async def until(condition: object, timeout_s: float = 5.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


def sent(
    scheduler: DynamicBatcher, requests: Sequence[InferRequest]
) -> list[asyncio.Task[dict[str, Array]]]:
    return [asyncio.ensure_future(scheduler.submit(sending)) for sending in requests]


async def staging_behind_one(
    scheduler: DynamicBatcher, instance: ModelInstance, backend: Held, requests: list[InferRequest]
) -> list[asyncio.Task[dict[str, Array]]]:
    """Submit `requests` (the first two held): the first runs on the instance, the second
    waits there behind it and the rest queue; once the first ended, the second runs and the
    third waits on the instance."""
    tasks = sent(scheduler, requests)
    await until(lambda: instance.waiting() == 1)
    assert scheduler.pending() == len(requests) - 1  # one waits on the instance, the rest queue
    backend.holds[0].set()
    await until(lambda: backend.ran == [0] and scheduler.pending() == len(requests) - 2)
    assert instance.waiting() == 1
    return tasks


def test_the_next_request_waits_on_the_instance_and_runs_in_order() -> None:
    async def scenario() -> None:
        backend = Held(holds=[0, 1])
        async with staged(backend) as (scheduler, (instance,)):
            tasks = await staging_behind_one(scheduler, instance, backend, values(4))
            # 2 waits on the instance and 3 in the queue: both still pending.
            assert scheduler.pending() == 2
            backend.release()
            answers = await asyncio.gather(*tasks)
            assert scheduler.pending() == 0
        for value, answer in enumerate(answers):
            np.testing.assert_array_equal(answer["y"], request(value).inputs["x"] * 2)
        assert backend.ran == [0, 1, 2, 3]
        assert backend.most == 1

    run(scenario)


def test_a_request_cancelled_while_it_waits_on_the_instance_never_runs() -> None:
    async def scenario() -> None:
        backend = Held(holds=[0, 1])
        batches: list[Timestamps] = []
        async with staged(backend, batches=batches) as (scheduler, (instance,)):
            requests = values(4)
            tasks = await staging_behind_one(scheduler, instance, backend, requests)
            waiting = tasks[2]
            waiting.cancel()
            requests[2].cancelled = True  # as the engine marks a request whose caller left
            backend.release()
            await asyncio.gather(tasks[0], tasks[1], tasks[3])
            with pytest.raises(asyncio.CancelledError):
                await waiting
        assert backend.ran == [0, 1, 3]
        assert len(batches) == 3  # the cancelled one was never reported as executed

    run(scenario)


def test_a_waiting_request_that_fails_fails_alone() -> None:
    async def scenario() -> None:
        backend = Held(holds=[0, 1])
        async with staged(backend) as (scheduler, (instance,)):
            requests = values(4)
            requests[2] = request(-1)  # refused
            tasks = await staging_behind_one(scheduler, instance, backend, requests)
            backend.release()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[2], InvalidArgument)
        assert not any(
            isinstance(result, BaseException) for i, result in enumerate(results) if i != 2
        )
        assert backend.ran == [0, 1, 3]

    run(scenario)


def test_the_instance_is_not_lent_while_a_request_waits_or_runs_on_it() -> None:
    async def scenario() -> None:
        backend = Held(holds=[0, 2])
        async with staged(backend) as (scheduler, _):
            tasks = sent(scheduler, values(3))
            await asyncio.sleep(0.01)
            backend.holds[0].set()
            # 1 runs and ends; 2, handed over behind it, now runs (held) on the instance.
            await until(lambda: tasks[1].done() and not scheduler.pending())
            assert scheduler.lend_here() is None
            later = sent(scheduler, [request(3)])
            await asyncio.sleep(0.01)
            assert backend.ran == [0, 1]
            backend.release()
            await asyncio.gather(*tasks, *later)
            lease = scheduler.lend_here()  # idle at last
            assert lease is not None
            lease.give_back()
        assert backend.ran == [0, 1, 2, 3]
        assert backend.most == 1

    run(scenario)


def test_each_instance_runs_one_batch_at_a_time_under_load() -> None:
    async def scenario() -> None:
        backends = [Held(), Held()]
        async with staged(*backends) as (scheduler, _):
            requests = values(60)
            answers = await asyncio.gather(*sent(scheduler, requests))
        for sending, answer in zip(requests, answers, strict=True):
            np.testing.assert_array_equal(answer["y"], sending.inputs["x"] * 2)
        assert sorted(backends[0].ran + backends[1].ran) == list(range(60))
        assert all(backend.most == 1 for backend in backends)

    run(scenario)


def test_a_waiting_request_computes_from_the_end_of_the_one_before() -> None:
    async def scenario() -> None:
        backend = Held(holds=[0, 1])
        batches: list[Timestamps] = []
        async with staged(backend, batches=batches) as (scheduler, (instance,)):
            tasks = await staging_behind_one(scheduler, instance, backend, values(3))
            await asyncio.sleep(0.02)  # 2 waits a while on the instance
            backend.release()
            await asyncio.gather(*tasks)
        assert len(batches) == 3
        second, third = batches[1:]
        # Its compute started when the instance was free for it, not when it was handed over.
        assert third.compute_start >= second.compute_output_start
        for marks in batches:
            assert marks.compute_start <= marks.compute_input_end <= marks.compute_end

    run(scenario)


def test_nothing_is_handed_to_an_instance_lent_to_a_caller_thread() -> None:
    async def scenario() -> None:
        backend = Held(holds=[0])
        async with staged(backend) as (scheduler, _):
            # 0 runs on the instance and 1 waits there behind it; then both are done.
            first = sent(scheduler, values(2))
            await asyncio.sleep(0.01)
            backend.release()
            await asyncio.gather(*first)
            lease = scheduler.lend_here()
            assert lease is not None
            try:
                later = sent(scheduler, [request(3)])
                await asyncio.sleep(0.02)
                assert backend.ran == [0, 1]  # 3 waits in the queue, not on the lent instance
                assert scheduler.pending() == 1
                answer = await asyncio.to_thread(lease.run, request(2))
                assert not isinstance(answer, Exception)
            finally:
                lease.give_back()
            await asyncio.gather(*later)
        assert backend.ran == [0, 1, 2, 3]
        assert backend.most == 1

    run(scenario)
