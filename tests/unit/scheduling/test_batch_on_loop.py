"""With dynamic batching on, a process that may use one CPU runs a formed batch on the event
loop where its instance allows it (`RunsOnLoop`, batches measured short), rather than handing
it to the instance's thread (`DynamicBatcher._execute`): each request gets its own answer, a
refused batch fails only the request at fault, `preserve_ordering` still delivers in order,
the batches it runs there keep measuring the instance, and a batch's callers have their
answers before the next batch holds the loop. With more CPUs (the process pinned
to two here) every batch goes to the thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest

from inferd.core.errors import InvalidArgument
from inferd.instances import instance as instance_module
from inferd.instances.instance import LOOP_WARMUP_BATCHES
from inferd.scheduling.dynamic import DynamicBatcher
from tests.unit.scheduling.fakes import request, settings
from tests.unit.scheduling.test_relay_on_loop import LOOP, OnLoop, run_on
from tests.unit.scheduling.test_staging import batcher, sent

ROWS = 4  # the batch cap: four requests sent together form one full batch


@asynccontextmanager
async def batching(*backends: OnLoop, extra: str = "") -> AsyncIterator[DynamicBatcher]:
    """A dynamic batcher (no queue delay, batches of up to `ROWS`) on `backends`."""
    config = settings(f"dynamic_batching {{ {extra} }}", max_batch_size=ROWS)
    async with batcher(backends, config) as (scheduler, _):
        yield scheduler


async def together(scheduler: DynamicBatcher, first: float) -> None:
    """`ROWS` requests sent at once (one batch), each answered with its own rows doubled."""
    sending = [request(first + value) for value in range(ROWS)]
    answers = await asyncio.wait_for(asyncio.gather(*sent(scheduler, sending)), 5)
    for one, answer in zip(sending, answers, strict=True):
        np.testing.assert_array_equal(answer["y"], one.inputs["x"] * 2)


async def batches(backend: OnLoop, count: int) -> None:
    async with batching(backend) as scheduler:
        for index in range(count):
            await together(scheduler, first=10 * index)
    assert all(len(batch) == ROWS for batch in backend.batches)


def test_on_one_cpu_batches_once_measured_short_run_on_the_loop() -> None:
    backend = OnLoop()
    run_on(1, lambda: batches(backend, LOOP_WARMUP_BATCHES + 3))
    assert LOOP not in backend.threads[:LOOP_WARMUP_BATCHES]  # measured on the thread
    assert backend.threads[LOOP_WARMUP_BATCHES:] == [LOOP] * 3


def test_with_two_cpus_batches_go_to_the_instance_thread() -> None:
    backend = OnLoop()
    run_on(2, lambda: batches(backend, LOOP_WARMUP_BATCHES + 3))
    assert LOOP not in backend.threads


def test_on_one_cpu_a_backend_that_does_not_declare_it_keeps_its_thread() -> None:
    backend = OnLoop()
    backend.runs_on_loop = False
    run_on(1, lambda: batches(backend, LOOP_WARMUP_BATCHES + 3))
    assert LOOP not in backend.threads


def test_on_one_cpu_batches_measured_long_on_the_loop_go_back_to_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(instance_module, "LOOP_LIMIT_NS", 5_000_000)  # a slow batch: 100 ms
    backend = OnLoop()
    backend.slow = frozenset({90.0})

    async def scenario() -> None:
        async with batching(backend) as scheduler:
            for index in range(LOOP_WARMUP_BATCHES):
                await together(scheduler, first=10 * index)
            await together(scheduler, first=90)  # on the loop, and slow
            await together(scheduler, first=100)

    run_on(1, scenario)
    assert backend.threads[-2:] == [LOOP, "m_0"]


def test_on_one_cpu_a_refused_batch_on_the_loop_fails_only_the_request_at_fault() -> None:
    async def scenario() -> None:
        backend = OnLoop()
        async with batching(backend) as scheduler:
            for index in range(LOOP_WARMUP_BATCHES):
                await together(scheduler, first=10 * index)
            sending = [request(value) for value in (1, -1, 2, 3)]
            answers = await asyncio.wait_for(
                asyncio.gather(*sent(scheduler, sending), return_exceptions=True), 5
            )
            await together(scheduler, first=200)
        assert isinstance(answers[1], InvalidArgument)
        for index in (0, 2, 3):
            answer = answers[index]
            assert isinstance(answer, dict)
            np.testing.assert_array_equal(answer["y"], sending[index].inputs["x"] * 2)
        # The refused batch, then its requests one by one, then the next batch: all here.
        assert backend.threads[LOOP_WARMUP_BATCHES:] == [LOOP] * 6
        assert backend.batches[-4:] == [[1.0], [2.0], [3.0], [200.0, 201.0, 202.0, 203.0]]

    run_on(1, scenario)


def test_on_one_cpu_a_batch_on_the_loop_is_delivered_in_its_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        first, second = OnLoop(holds=[100]), OnLoop(holds=[100])
        async with batching(first, second, extra="preserve_ordering: true") as scheduler:
            held = sent(scheduler, [request(100)])  # on the thread of one instance, held
            await asyncio.sleep(0.01)
            monkeypatch.setattr(instance_module, "LOOP_WARMUP_BATCHES", 0)  # short at once
            later = sent(scheduler, [request(101), request(102)])  # the other's batch
            await asyncio.sleep(0.02)
            # The other instance's batch ran here (the held one is noted once it runs).
            assert first.threads + second.threads == [LOOP]
            assert not any(task.done() for task in later)  # ran, but waits for its turn
            first.release()
            second.release()
            await asyncio.wait_for(asyncio.gather(*held, *later), 5)
        assert sorted(first.threads + second.threads) == [
            LOOP,
            "m_0" if first.ran[0] == 100 else "m_1",
        ]

    run_on(1, scenario)


def test_on_one_cpu_the_callers_of_a_batch_on_the_loop_are_answered_before_the_next_runs() -> None:
    """The worker lets the loop catch up before it forms the next batch: the first batch's
    callers have their answers (their clients could send again, to join the next batch) before
    the batch queued behind theirs holds the loop in turn."""

    async def scenario() -> None:
        backend = OnLoop()
        batches_when_answered: list[int] = []

        async def answered(value: float) -> None:
            await scheduler.submit(request(value))
            batches_when_answered.append(len(backend.batches))

        async with batching(backend) as scheduler:
            for index in range(LOOP_WARMUP_BATCHES):
                await together(scheduler, first=10 * index)
            callers = [answered(100 + value) for value in range(2 * ROWS)]
            await asyncio.wait_for(asyncio.gather(*callers), 5)
        warm = LOOP_WARMUP_BATCHES
        assert backend.threads[warm:] == [LOOP, LOOP]
        assert batches_when_answered == [warm + 1] * ROWS + [warm + 2] * ROWS

    run_on(1, scenario)
