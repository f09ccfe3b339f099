"""A request whose caller waits for it on a thread of its own runs there, on an idle instance
lent to it (`DynamicBatcher.lend_here`): the instance's worker waits for it, the batch is
reported on the loop, and nothing else runs on the instance meanwhile."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from inferd.backends.base import BatchRequest
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array, Timestamps
from inferd.scheduling.batch import Answer
from inferd.scheduling.dynamic import DynamicBatcher
from inferd.scheduling.lease import Lease
from tests.unit.scheduling.fakes import Doubler, instances, request, settings
from tests.unit.scheduling.test_dynamic import batcher, run
from tests.unit.scheduling.test_idle import Counted


class Watched(Doubler):
    """A `Doubler` noting the thread of each execution and the most that ran at once."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__(gate=gate, refuse=frozenset({-1.0}))
        self.threads: list[str] = []
        self._running = 0
        self.most = 0
        self._lock = threading.Lock()

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest] = (),
    ) -> dict[str, Array]:
        with self._lock:
            self._running += 1
            self.most = max(self.most, self._running)
            self.threads.append(threading.current_thread().name)
        try:
            return super().execute(inputs, output_names, requests)
        finally:
            with self._lock:
                self._running -= 1


async def _idle_lease(scheduler: DynamicBatcher) -> Lease:
    await asyncio.sleep(0.01)  # the worker waits for work
    lease = scheduler.lend_here()
    assert lease is not None
    return lease


def _run_in(name: str, lease: Lease, value: float) -> asyncio.Future[Answer]:
    """`lease.run` on a thread named `name`, as a waiting caller's thread runs it."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[Answer] = loop.create_future()

    def caller() -> None:
        answer = lease.run(request(value))
        loop.call_soon_threadsafe(answered.set_result, answer)

    threading.Thread(target=caller, name=name).start()
    return answered


def test_a_lent_instance_runs_the_request_on_its_callers_thread() -> None:
    async def scenario() -> None:
        backend = Watched()
        executions: list[int] = []
        async with batcher(settings(), backend, executions=executions) as scheduler:
            lease = await _idle_lease(scheduler)
            answer = await _run_in("caller", lease, 3.0)
            assert isinstance(answer, dict)
            np.testing.assert_array_equal(answer["y"], np.full((1, 4), 6.0))
            assert executions == []  # reported on the loop, once it is given back
            lease.give_back()
            assert executions == [1]
            # Back with its worker, and lendable again.
            result = await scheduler.submit(request(1.0))
            np.testing.assert_array_equal(result["y"], np.full((1, 4), 2.0))
        assert backend.threads[0] == "caller"

    run(scenario)


def test_while_lent_the_instance_runs_nothing_else_and_its_worker_waits() -> None:
    async def scenario() -> None:
        backend = Watched(gate=threading.Event())
        async with batcher(settings(), backend) as scheduler:
            lease = await _idle_lease(scheduler)
            answered = _run_in("caller", lease, 0.0)
            assert scheduler.lend_here() is None  # its only instance is out
            queued = [asyncio.ensure_future(scheduler.submit(request(v))) for v in (1.0, 2.0)]
            await asyncio.sleep(0.05)
            assert scheduler.pending() == 2  # nothing taken from the queue meanwhile
            assert backend.gate is not None
            backend.gate.set()
            await answered
            lease.give_back()
            results = await asyncio.gather(*queued)
        for value, result in zip((1.0, 2.0), results, strict=True):
            np.testing.assert_array_equal(result["y"], np.full((1, 4), 2.0 * value))
        assert backend.most == 1
        assert backend.batches == [[0.0], [1.0], [2.0]]
        assert backend.threads[0] == "caller" and "caller" not in backend.threads[1:]

    run(scenario)


def test_a_failed_execution_is_the_callers_answer_and_the_instance_comes_back() -> None:
    async def scenario() -> None:
        executions: list[int] = []
        async with batcher(settings(), Watched(), executions=executions) as scheduler:
            lease = await _idle_lease(scheduler)
            answer = await _run_in("caller", lease, -1.0)  # refused by the model
            assert isinstance(answer, InvalidArgument)
            lease.give_back()
            assert executions == []  # a failed execution is not a batch executed
            result = await scheduler.submit(request(2.0))
            np.testing.assert_array_equal(result["y"], np.full((1, 4), 4.0))

    run(scenario)


def test_stopping_waits_for_a_lent_instance() -> None:
    async def scenario() -> None:
        models = instances(Watched())
        scheduler = DynamicBatcher(models, settings(), ["y"])
        scheduler.start()
        try:
            lease = await _idle_lease(scheduler)
            stopping = asyncio.ensure_future(scheduler.stop())
            await asyncio.sleep(0.05)
            assert not stopping.done()
            assert scheduler.lend_here() is None  # stopping: no more lending
            await _run_in("caller", lease, 1.0)
            lease.give_back()
            await asyncio.wait_for(stopping, 10)
        finally:
            models[0].close()

    run(scenario)


@pytest.mark.parametrize(
    "extra", ["dynamic_batching { }", "dynamic_batching { max_queue_delay_microseconds: 0 }"]
)
def test_a_model_that_batches_lends_nothing(extra: str) -> None:
    async def scenario() -> None:
        async with batcher(settings(extra), Watched()) as scheduler:
            await asyncio.sleep(0.01)
            assert scheduler.lend_here() is None

    run(scenario)


def test_an_instance_that_cannot_run_elsewhere_is_never_lent() -> None:
    async def scenario() -> None:
        counted = Counted(instances(Watched())[0])  # no `execute_here`
        scheduler = DynamicBatcher([counted], settings(), ["y"], None)
        scheduler.start()
        try:
            await asyncio.sleep(0.01)
            assert scheduler.lend_here() is None
        finally:
            await scheduler.stop()
            counted.close()

    run(scenario)


def test_the_batch_is_reported_with_its_compute_marks_in_order() -> None:
    async def scenario() -> None:
        marks: list[Timestamps] = []

        def on_batch(
            rows: int, compute: Timestamps, instance: str, calls: object, padding: int
        ) -> None:
            marks.append(compute)

        models = instances(Watched())
        scheduler = DynamicBatcher(models, settings(), ["y"], on_batch)
        scheduler.start()
        try:
            lease = await _idle_lease(scheduler)
            await _run_in("caller", lease, 1.0)
            lease.give_back()
        finally:
            await scheduler.stop()
            models[0].close()
        (compute,) = marks
        assert 0 < compute.compute_start <= compute.compute_input_end
        assert compute.compute_input_end <= compute.compute_output_start <= compute.compute_end

    run(scenario)
