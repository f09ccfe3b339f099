"""With batching off on in-process instances, the instances' completions move the requests
(`relay.py`): no worker task, two requests per instance at most, the idle instance first,
cancellation and pending counts, a failing observer, stopping, and a batch that cannot be
built."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from inferd.core.errors import Internal, InvalidArgument
from inferd.core.types import Array, Timestamps
from inferd.scheduling.batch import Batch, BatchRunner, Deliver, Pending
from inferd.scheduling.dynamic import DynamicBatcher
from inferd.scheduling.queue import Queued
from inferd.scheduling.stacked import StackedKind
from tests.unit.scheduling.fakes import Doubler, instances, request, settings
from tests.unit.scheduling.test_dynamic import run
from tests.unit.scheduling.test_staging import Held, sent, staged, until, values


def test_no_worker_task_runs_and_each_batch_is_reported_from_its_instance_callback() -> None:
    async def scenario() -> None:
        reported_in: list[asyncio.Task[object] | None] = []

        def on_batch(
            rows: int, compute: Timestamps, instance: str, calls: object, padding: int
        ) -> None:
            reported_in.append(asyncio.current_task())

        models = instances(Doubler(), Doubler())
        scheduler = DynamicBatcher(models, settings(), ["y"], on_batch)
        scheduler.start()
        try:
            requests = values(8)
            answers = await asyncio.wait_for(asyncio.gather(*sent(scheduler, requests)), 10)
            assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("worker:")]
        finally:
            await scheduler.stop()
            for model in models:
                model.close()
        for sending, answer in zip(requests, answers, strict=True):
            np.testing.assert_array_equal(answer["y"], sending.inputs["x"] * 2)
        assert reported_in == [None] * 8  # a loop callback, not a task

    run(scenario)


def test_an_instance_holds_the_request_it_runs_and_one_more_and_the_rest_queue() -> None:
    async def scenario() -> None:
        backend = Held(holds=[0])
        async with staged(backend) as (scheduler, (instance,)):
            tasks = sent(scheduler, values(5))
            await until(lambda: instance.waiting() == 1)
            await asyncio.sleep(0.02)
            assert instance.waiting() == 1  # 1 waits on the instance
            assert scheduler.pending() == 4  # and 2, 3 and 4 in the queue
            backend.release()
            await asyncio.gather(*tasks)
            assert scheduler.pending() == 0
        assert backend.ran == [0, 1, 2, 3, 4]
        assert backend.most == 1

    run(scenario)


def test_a_request_goes_to_an_idle_instance_before_waiting_on_a_busy_one() -> None:
    async def scenario() -> None:
        first, second = Held(holds=[0]), Held()
        async with staged(first, second) as (scheduler, _):
            held = sent(scheduler, [request(0)])
            await asyncio.sleep(0.01)
            answer = await asyncio.wait_for(scheduler.submit(request(1)), 5)
            np.testing.assert_array_equal(answer["y"], request(1).inputs["x"] * 2)
            assert second.ran == [1] and first.ran == []
            first.release()
            await asyncio.gather(*held)

    run(scenario)


def test_a_cancelled_queued_request_stops_counting_at_once_and_never_runs() -> None:
    async def scenario() -> None:
        backend = Held(holds=[0])
        async with staged(backend) as (scheduler, (instance,)):
            tasks = sent(scheduler, values(4))
            await until(lambda: instance.waiting() == 1)
            assert scheduler.pending() == 3  # 1 on the instance, 2 and 3 queued
            tasks[2].cancel()
            with pytest.raises(asyncio.CancelledError):
                await tasks[2]
            assert scheduler.pending() == 2
            backend.release()
            await asyncio.gather(tasks[0], tasks[1], tasks[3])
        assert backend.ran == [0, 1, 3]

    run(scenario)


def test_a_request_waiting_on_the_instance_stops_counting_when_its_caller_goes() -> None:
    async def scenario() -> None:
        backend = Held(holds=[0])
        async with staged(backend) as (scheduler, (instance,)):
            requests = values(2)
            tasks = sent(scheduler, requests)
            await until(lambda: instance.waiting() == 1)
            assert scheduler.pending() == 1
            tasks[1].cancel()
            requests[1].cancelled = True  # as the engine marks a request whose caller left
            with pytest.raises(asyncio.CancelledError):
                await tasks[1]
            assert scheduler.pending() == 0
            backend.release()
            await tasks[0]
        assert backend.ran == [0]

    run(scenario)


def test_a_failing_observer_fails_only_its_request_and_the_instance_serves_on() -> None:
    async def scenario() -> None:
        def on_batch(
            rows: int, compute: Timestamps, instance: str, calls: Sequence[Pending], padding: int
        ) -> None:
            if float(calls[0].request.inputs["x"][0, 0]) == 1.0:
                raise RuntimeError("observer broke")

        models = instances(Doubler())
        scheduler = DynamicBatcher(models, settings(), ["y"], on_batch)
        scheduler.start()
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*sent(scheduler, values(4)), return_exceptions=True), 10
            )
            later = await asyncio.wait_for(scheduler.submit(request(5)), 5)
        finally:
            await scheduler.stop()
            models[0].close()
        assert isinstance(results[1], Internal)
        assert [isinstance(result, BaseException) for result in results] == [
            False,
            True,
            False,
            False,
        ]
        np.testing.assert_array_equal(later["y"], request(5).inputs["x"] * 2)

    run(scenario)


def test_stopping_answers_what_is_queued_and_held_first() -> None:
    async def scenario() -> None:
        backend = Held(holds=[0])
        async with staged(backend) as (scheduler, (instance,)):
            tasks = sent(scheduler, values(4))
            await until(lambda: instance.waiting() == 1)
            stopping = asyncio.ensure_future(scheduler.stop())
            await asyncio.sleep(0.05)
            assert not stopping.done()
            backend.release()
            await asyncio.wait_for(stopping, 10)
            assert all(task.done() and not task.exception() for task in tasks)
        assert backend.ran == [0, 1, 2, 3]

    run(scenario)


class _Unbuildable(StackedKind):
    def inputs(self, batch: Batch[Queued]) -> dict[str, Array]:
        raise InvalidArgument("inputs that cannot be built")


def test_a_handed_batch_whose_inputs_cannot_be_built_fails_from_the_loop() -> None:
    async def scenario() -> None:
        (model,) = instances(Doubler())
        runner = BatchRunner(_Unbuildable(["y"]), None)
        loop = asyncio.get_running_loop()
        call = Queued(request(1), loop.create_future(), 0, 1, queued=False)
        delivered: asyncio.Future[Deliver] = loop.create_future()
        try:
            runner.hand(model, call, delivered.set_result)
            assert not delivered.done()  # answered from the loop, not within `hand`
            (await delivered)()
        finally:
            model.close()
        with pytest.raises(InvalidArgument, match="cannot be built"):
            call.future.result()

    run(scenario)
