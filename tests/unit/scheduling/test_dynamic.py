"""The dynamic batcher with a trivial Python instance: formation, delays, priorities, policies."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
import pytest

from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.types import Array, InferRequest, Timestamps
from inferd.scheduling.dynamic import DynamicBatcher
from inferd.scheduling.dynamic_settings import BatchingSettings
from tests.unit.scheduling.fakes import Doubler, instances, request, settings

T = TypeVar("T")


def run(test: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(test())


@asynccontextmanager
async def batcher(
    config: BatchingSettings, *backends: Doubler, executions: list[int] | None = None
) -> AsyncIterator[DynamicBatcher]:
    def on_batch(
        rows: int, compute: Timestamps, instance: str, calls: object, padding: int
    ) -> None:
        assert compute.compute_start <= compute.compute_end
        if executions is not None:
            executions.append(rows)

    models = instances(*backends)
    scheduler = DynamicBatcher(models, config, ["y"], on_batch)
    scheduler.start()
    try:
        yield scheduler
    finally:
        for backend in backends:
            if backend.gate is not None:
                backend.gate.set()
        await scheduler.stop()
        for model in models:
            model.close()


async def submit_all(scheduler: DynamicBatcher, requests: list[InferRequest]) -> list[Array]:
    results = await asyncio.gather(*(scheduler.submit(r) for r in requests))
    return [result["y"] for result in results]


def check_outputs(requests: list[InferRequest], outputs: list[Array]) -> None:
    for sent, got in zip(requests, outputs, strict=True):
        np.testing.assert_array_equal(got, sent.inputs["x"] * 2)


def test_requests_queued_together_form_one_batch_at_once() -> None:
    async def scenario() -> float:
        backend, executions = Doubler(), list[int]()
        async with batcher(
            settings("dynamic_batching { max_queue_delay_microseconds: 5000000 }"),
            backend,
            executions=executions,
        ) as scheduler:
            requests = [request(i, rows=1 + i % 2) for i in range(5)]  # 1+2+1+2+1 = 7 rows
            requests.append(request(9))  # 8 rows: full
            start = time.monotonic()
            check_outputs(requests, await submit_all(scheduler, requests))
            elapsed = time.monotonic() - start
        assert executions == [8]
        assert backend.batches == [[0, 1, 1, 2, 3, 3, 4, 9]]
        return elapsed

    assert run(scenario) < 1  # full: sent without waiting the 5 s delay


def test_preferred_size_is_sent_at_once_and_the_rest_after_the_delay() -> None:
    async def scenario() -> None:
        backend = Doubler()
        config = settings(
            "dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 300000 }"
        )
        async with batcher(config, backend) as scheduler:
            first = [asyncio.ensure_future(scheduler.submit(request(i))) for i in range(5)]
            start = time.monotonic()
            await asyncio.gather(*first[:4])
            assert time.monotonic() - start < 0.2
            assert not first[4].done()
            await first[4]
            assert time.monotonic() - start >= 0.25
        assert backend.batches == [[0, 1, 2, 3], [4]]

    run(scenario)


def test_a_partial_batch_waits_for_the_queue_delay() -> None:
    async def scenario() -> float:
        backend = Doubler()
        config = settings("dynamic_batching { max_queue_delay_microseconds: 50000 }")
        async with batcher(config, backend) as scheduler:
            start = time.monotonic()
            requests = [request(i) for i in range(3)]
            check_outputs(requests, await submit_all(scheduler, requests))
            elapsed = time.monotonic() - start
        assert backend.batches == [[0, 1, 2]]
        return elapsed

    assert run(scenario) >= 0.045


def test_delay_zero_batches_only_what_is_queued() -> None:
    async def scenario() -> None:
        backend = Doubler()
        async with batcher(settings("dynamic_batching { }"), backend) as scheduler:
            await submit_all(scheduler, [request(i) for i in range(3)])
            start = time.monotonic()
            await scheduler.submit(request(7))
            assert time.monotonic() - start < 0.1
        assert backend.batches == [[0, 1, 2], [7]]

    run(scenario)


def test_batching_off_runs_one_request_per_execution() -> None:
    async def scenario() -> None:
        backend = Doubler()
        async with batcher(settings(), backend) as scheduler:
            await submit_all(scheduler, [request(i, rows=2) for i in range(3)])
        assert backend.batches == [[0, 0], [1, 1], [2, 2]]

    run(scenario)


def test_only_requests_with_matching_shapes_are_batched() -> None:
    async def scenario() -> None:
        backend = Doubler()
        config = settings("dynamic_batching { max_queue_delay_microseconds: 300000 }")
        async with batcher(config, backend) as scheduler:
            requests = [request(1, width=4), request(2, width=4), request(3, width=6)]
            tasks = [asyncio.ensure_future(scheduler.submit(r)) for r in requests]
            start = time.monotonic()
            await asyncio.gather(*tasks[:2])
            # The first batch could not grow past the 6-wide request, so it went at once.
            assert time.monotonic() - start < 0.2
            await tasks[2]
            check_outputs(requests, [task.result()["y"] for task in tasks])
        assert backend.batches == [[1, 2], [3]]

    run(scenario)


async def _started(scheduler: DynamicBatcher, value: float) -> asyncio.Future[dict[str, Array]]:
    """Submit a request that occupies the (gated) instance, and let it be taken."""
    task = asyncio.ensure_future(scheduler.submit(request(value)))
    while scheduler.pending():
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    return task


PRIORITIES = """
dynamic_batching {
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy { max_queue_size: 3 }
}
"""


def test_higher_priority_requests_run_first() -> None:
    async def scenario() -> None:
        backend = Doubler(gate=threading.Event())
        async with batcher(settings(PRIORITIES, max_batch_size=1), backend) as scheduler:
            busy = await _started(scheduler, 0)
            low = [asyncio.ensure_future(scheduler.submit(request(v))) for v in (1, 2)]
            high = asyncio.ensure_future(scheduler.submit(request(3, priority=1)))
            await asyncio.sleep(0.01)
            assert backend.gate is not None
            backend.gate.set()
            await asyncio.gather(busy, high, *low)
        assert backend.batches == [[0], [3], [1], [2]]

    run(scenario)


@pytest.mark.parametrize("priority", [3, -1, "1", True, 1.5])
def test_an_invalid_priority_is_rejected(priority: object) -> None:
    async def scenario() -> None:
        async with batcher(settings(PRIORITIES), Doubler()) as scheduler:
            with pytest.raises(InvalidArgument, match="priority"):
                await scheduler.submit(request(1, priority=priority))

    run(scenario)


def test_a_full_queue_answers_unavailable_and_recovers() -> None:
    async def scenario() -> None:
        backend = Doubler(gate=threading.Event())
        async with batcher(settings(PRIORITIES, max_batch_size=1), backend) as scheduler:
            busy = await _started(scheduler, 0)
            queued = [asyncio.ensure_future(scheduler.submit(request(v))) for v in (1, 2, 3)]
            await asyncio.sleep(0)
            with pytest.raises(Unavailable, match="full"):
                await scheduler.submit(request(4))
            # The limit is per level: the other level still has room.
            queued.append(asyncio.ensure_future(scheduler.submit(request(5, priority=1))))
            assert backend.gate is not None
            backend.gate.set()
            await asyncio.gather(busy, *queued)
            await scheduler.submit(request(6))
        assert backend.batches == [[0], [5], [1], [2], [3], [6]]

    run(scenario)


def _timeouts(action: str, override: bool = False) -> BatchingSettings:
    return settings(
        "dynamic_batching { default_queue_policy { default_timeout_microseconds: 30000 "
        f"timeout_action: {action} allow_timeout_override: {str(override).lower()} }} }}",
        max_batch_size=1,
    )


def test_reject_fails_a_request_that_waits_past_its_timeout() -> None:
    async def scenario() -> None:
        backend = Doubler(gate=threading.Event())
        async with batcher(_timeouts("REJECT"), backend) as scheduler:
            busy = await _started(scheduler, 0)
            start = time.monotonic()
            with pytest.raises(Unavailable, match="timed out"):
                await scheduler.submit(request(1))
            assert 0.025 <= time.monotonic() - start < 1  # failed while the instance was busy
            assert scheduler.pending() == 0
            assert backend.gate is not None
            backend.gate.set()
            await busy
            await scheduler.submit(request(2))
        assert backend.batches == [[0], [2]]

    run(scenario)


def test_delay_puts_a_timed_out_request_behind_the_others_of_its_level() -> None:
    async def scenario() -> None:
        backend = Doubler(gate=threading.Event())
        async with batcher(_timeouts("DELAY"), backend) as scheduler:
            busy = await _started(scheduler, 0)
            late = asyncio.ensure_future(scheduler.submit(request(1)))
            await asyncio.sleep(0.05)  # past its 30 ms timeout
            on_time = asyncio.ensure_future(scheduler.submit(request(2)))
            await asyncio.sleep(0)
            assert backend.gate is not None
            backend.gate.set()
            await asyncio.gather(busy, late, on_time)  # DELAY still answers it
        assert backend.batches == [[0], [2], [1]]

    run(scenario)


@pytest.mark.parametrize("override", [True, False])
def test_a_request_may_shorten_its_timeout_when_allowed(override: bool) -> None:
    async def scenario() -> None:
        backend = Doubler(gate=threading.Event())
        config = settings(
            "dynamic_batching { default_queue_policy { default_timeout_microseconds: 5000000 "
            f"allow_timeout_override: {str(override).lower()} }} }}",
            max_batch_size=1,
        )
        async with batcher(config, backend) as scheduler:
            busy = await _started(scheduler, 0)
            short = asyncio.ensure_future(scheduler.submit(request(1, timeout=20000)))
            done, _ = await asyncio.wait([short], timeout=0.2)
            assert backend.gate is not None
            backend.gate.set()
            await busy
            if override:
                assert done and isinstance(short.exception(), Unavailable)
            else:
                assert not done
                await short

    run(scenario)


def test_an_invalid_timeout_is_rejected() -> None:
    async def scenario() -> None:
        async with batcher(_timeouts("REJECT", override=True), Doubler()) as scheduler:
            with pytest.raises(InvalidArgument, match="timeout"):
                await scheduler.submit(request(1, timeout="soon"))

    run(scenario)


def _completion_order(config: BatchingSettings) -> list[float]:
    async def scenario() -> list[float]:
        order: list[float] = []
        backend = Doubler(slow=frozenset({0.0}))
        async with batcher(config, backend, Doubler(slow=frozenset({0.0}))) as scheduler:

            async def one(value: float) -> None:
                await scheduler.submit(request(value))
                order.append(value)

            first = asyncio.ensure_future(one(0))  # slow, on the first instance
            await asyncio.sleep(0.01)
            await asyncio.gather(first, one(1))  # fast, on the second instance
        return order

    return run(scenario)


def test_two_instances_finish_out_of_order_without_preserve_ordering() -> None:
    assert _completion_order(settings("dynamic_batching { }", max_batch_size=1)) == [1, 0]


def test_preserve_ordering_completes_in_request_order_across_instances() -> None:
    config = settings("dynamic_batching { preserve_ordering: true }", max_batch_size=1)
    assert _completion_order(config) == [0, 1]


def test_stop_finishes_every_accepted_request() -> None:
    async def scenario() -> None:
        backend = Doubler()
        config = settings("dynamic_batching { max_queue_delay_microseconds: 10000000 }")
        async with batcher(config, backend) as scheduler:
            tasks = [asyncio.ensure_future(scheduler.submit(request(i))) for i in range(3)]
            await asyncio.sleep(0.01)
            await scheduler.stop()
            assert all(task.done() and not task.exception() for task in tasks)
            with pytest.raises(Unavailable):
                await scheduler.submit(request(4))

    run(scenario)


def test_a_failing_batch_report_fails_that_batch_and_the_worker_keeps_serving() -> None:
    async def test() -> None:
        failures = iter([True, False])

        def on_batch(
            rows: int, compute: Timestamps, instance: str, calls: object, padding: int
        ) -> None:
            if next(failures, False):
                raise RuntimeError("observer bug")

        models = instances(Doubler())
        scheduler = DynamicBatcher(models, settings(), ["y"], on_batch)
        scheduler.start()
        try:
            with pytest.raises(Exception, match="observer bug"):
                await asyncio.wait_for(scheduler.submit(request(1.0)), 5)
            second = await asyncio.wait_for(scheduler.submit(request(2.0)), 5)
            np.testing.assert_array_equal(second["y"], np.full((1, 4), 4.0))
        finally:
            await scheduler.stop()
            for model in models:
                model.close()

    run(test)


def test_one_refused_input_fails_only_its_own_request_in_a_batch() -> None:
    async def test() -> None:
        gate = threading.Event()
        backend = Doubler(gate, refuse=frozenset({-1.0}))
        async with batcher(settings("dynamic_batching { }"), backend) as scheduler:
            blocker = asyncio.ensure_future(scheduler.submit(request(0.0)))
            await asyncio.sleep(0.05)  # the instance is busy: the next three queue together
            requests = [request(1.0), request(-1.0), request(2.0)]
            results = asyncio.gather(
                *(scheduler.submit(r) for r in requests), return_exceptions=True
            )
            await asyncio.sleep(0.05)
            gate.set()
            first, refused, third = await results
            await blocker
        assert isinstance(refused, InvalidArgument)
        assert not isinstance(first, BaseException) and not isinstance(third, BaseException)
        np.testing.assert_array_equal(first["y"], np.full((1, 4), 2.0))
        np.testing.assert_array_equal(third["y"], np.full((1, 4), 4.0))
        assert [1.0] in backend.batches and [2.0] in backend.batches

    run(test)


def test_a_batch_still_forming_counts_against_max_queue_size() -> None:
    async def scenario() -> None:
        config = settings(
            "dynamic_batching { max_queue_delay_microseconds: 200000 "
            "default_queue_policy { max_queue_size: 1 } }"
        )
        async with batcher(config, Doubler()) as scheduler:
            # The first request waits in a forming batch for more (200 ms): the queue is full.
            first = asyncio.ensure_future(scheduler.submit(request(1)))
            await asyncio.sleep(0.02)
            assert scheduler.pending() == 1
            with pytest.raises(Unavailable, match="full"):
                await scheduler.submit(request(2))
            await first
            assert scheduler.pending() == 0
            await scheduler.submit(request(3))  # room again once the batch went to the instance

    run(scenario)


def test_a_cancelled_request_leaves_the_queue_and_its_room_at_once() -> None:
    async def scenario() -> None:
        backend = Doubler(gate=threading.Event())
        async with batcher(settings(PRIORITIES, max_batch_size=1), backend) as scheduler:
            busy = await _started(scheduler, 0)
            waiting = [asyncio.ensure_future(scheduler.submit(request(v))) for v in (1, 2, 3)]
            await asyncio.sleep(0.01)
            assert scheduler.pending() == 3  # the queue is full
            waiting[1].cancel()
            await asyncio.gather(waiting[1], return_exceptions=True)
            assert scheduler.pending() == 2
            waiting[1] = asyncio.ensure_future(scheduler.submit(request(4)))  # room again
            await asyncio.sleep(0.01)
            assert backend.gate is not None
            backend.gate.set()
            await asyncio.gather(busy, *waiting)
            assert scheduler.pending() == 0
        assert backend.batches == [[0], [1], [3], [4]]  # the cancelled one never ran

    run(scenario)
