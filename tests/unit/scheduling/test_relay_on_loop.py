"""With batching off, a request that finds its model quiet runs on the event loop (`relay.py`,
`RunsOnLoop`): only where the backend declares it safe and its batches measured short, only
when nothing else of the model is in flight, with errors, statistics and a failing observer
handled as on the instance's thread. With more than one CPU a request that overlaps the one
before goes to the instance's thread; with one (the process pinned to it here) it need not."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest

from inferd.core.errors import Internal, InvalidArgument
from inferd.core.types import Array, InferRequest, Timestamps
from inferd.instances import instance as instance_module
from inferd.instances.instance import LOOP_WARMUP_BATCHES
from inferd.scheduling.batch import Pending
from inferd.scheduling.dynamic import DynamicBatcher
from inferd.scheduling.relay import RUNS_PER_PASS
from tests.unit.core.test_usable_cpus import on_cpus
from tests.unit.scheduling.fakes import request, settings
from tests.unit.scheduling.test_dynamic import run
from tests.unit.scheduling.test_staging import Held, batcher, sent

LOOP = "MainThread"


class OnLoop(Held):
    """A `Held` doubler whose backend declares its batches safe on the event loop."""

    runs_on_loop = True


def arrived(value: float) -> InferRequest:
    """A request stamped as a frontend stamps it when it arrives."""
    sending = request(value)
    sending.timestamps.received = time.monotonic_ns()
    return sending


@asynccontextmanager
async def relayed(
    *backends: Held, reported: list[tuple[int, Timestamps]] | None = None, broken: float = -2
) -> AsyncIterator[DynamicBatcher]:
    """A scheduler on `backends`; each batch's rows and compute marks go to `reported`, and
    the observer raises for a request of value `broken`."""

    def on_batch(
        rows: int, compute: Timestamps, instance: str, calls: Sequence[Pending], padding: int
    ) -> None:
        if float(calls[0].request.inputs["x"][0, 0]) == broken:
            raise RuntimeError("observer broke")
        if reported is not None:
            reported.append((rows, compute))

    async with batcher(backends, settings(), on_batch) as (scheduler, _):
        yield scheduler


async def one_by_one(scheduler: DynamicBatcher, count: int, first: float = 0) -> None:
    """`count` requests, each sent once the one before is answered (concurrency 1)."""
    for value in range(count):
        sending = arrived(first + value)
        answer = await asyncio.wait_for(scheduler.submit(sending), 5)
        np.testing.assert_array_equal(answer["y"], sending.inputs["x"] * 2)


def test_once_measured_short_a_request_alone_runs_on_the_loop_and_is_reported() -> None:
    async def scenario() -> None:
        backend = OnLoop()
        reported: list[tuple[int, Timestamps]] = []
        async with relayed(backend, reported=reported) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES + 3)
        # The first batches are measured on the instance's thread, the rest run on the loop.
        assert LOOP not in backend.threads[:LOOP_WARMUP_BATCHES]
        assert backend.threads[LOOP_WARMUP_BATCHES:] == [LOOP] * 3
        assert len(reported) == LOOP_WARMUP_BATCHES + 3
        rows, compute = reported[-1]
        assert rows == 1
        assert 0 < compute.compute_start <= compute.compute_input_end
        assert compute.compute_input_end <= compute.compute_output_start <= compute.compute_end

    run(scenario)


def test_a_backend_that_does_not_declare_it_never_runs_on_the_loop() -> None:
    async def scenario() -> None:
        backend = Held()
        async with relayed(backend) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES + 3)
        assert LOOP not in backend.threads

    run(scenario)


def test_batches_measured_longer_than_the_limit_stay_on_the_instance_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(instance_module, "LOOP_LIMIT_NS", 0)  # every batch takes longer

    async def scenario() -> None:
        backend = OnLoop()
        async with relayed(backend) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES + 3)
        assert LOOP not in backend.threads

    run(scenario)


def run_on(cpus: int, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """`scenario`, its scheduler made while the process may use `cpus` CPUs."""
    with on_cpus(cpus):
        run(scenario)


async def sent_to_the_thread(
    scheduler: DynamicBatcher, monkeypatch: pytest.MonkeyPatch, value: float
) -> list[asyncio.Task[dict[str, Array]]]:
    """A request sent while the model's batches count as long, so handed to an instance's
    thread (where a held one stays); once it is there they count as short again, however
    long it is held."""
    monkeypatch.setattr(instance_module, "LOOP_LIMIT_NS", 0)
    tasks = sent(scheduler, [arrived(value)])
    await asyncio.sleep(0.01)
    monkeypatch.setattr(instance_module, "LOOP_LIMIT_NS", 10**12)
    return tasks


def test_a_request_behind_one_in_flight_waits_on_the_instance_in_order() -> None:
    async def scenario() -> None:
        backend = OnLoop(holds=[100])
        async with relayed(backend) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES)
            held = sent(scheduler, [request(100)])  # arrived before the last one ended
            await asyncio.sleep(0.01)
            behind = sent(scheduler, [arrived(101), arrived(102)])
            await asyncio.sleep(0.02)
            assert len(backend.ran) == LOOP_WARMUP_BATCHES  # nothing ran on the loop meanwhile
            backend.release()
            await asyncio.wait_for(asyncio.gather(*held, *behind), 5)
        assert backend.ran[-3:] == [100.0, 101.0, 102.0]
        assert backend.threads[-3:] == ["m_0"] * 3
        assert backend.most == 1

    run_on(2, scenario)


def test_on_one_cpu_requests_behind_one_in_flight_wait_then_run_on_the_loop_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        backend = OnLoop(holds=[100])
        async with relayed(backend) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES)
            held = await sent_to_the_thread(scheduler, monkeypatch, 100)
            behind = sent(scheduler, [arrived(101), arrived(102)])
            await asyncio.sleep(0.02)
            assert len(backend.ran) == LOOP_WARMUP_BATCHES  # nothing ran on the loop meanwhile
            backend.release()
            await asyncio.wait_for(asyncio.gather(*held, *behind), 5)
        assert backend.ran[-3:] == [100.0, 101.0, 102.0]
        assert backend.threads[-3:] == ["m_0", LOOP, LOOP]
        assert backend.most == 1

    run_on(1, scenario)


async def arrived_before_the_last_one_ended(backend: OnLoop) -> None:
    async with relayed(backend) as scheduler:
        await one_by_one(scheduler, LOOP_WARMUP_BATCHES)
        early = arrived(50)  # arrived while the next one was in flight
        await one_by_one(scheduler, 1, first=51)
        await asyncio.wait_for(scheduler.submit(early), 5)


def test_a_request_that_arrived_before_the_last_one_ended_goes_to_the_instance_thread() -> None:
    backend = OnLoop()
    run_on(2, lambda: arrived_before_the_last_one_ended(backend))
    assert backend.threads[-2:] == [LOOP, "m_0"]


def test_on_one_cpu_a_request_that_arrived_before_the_last_one_ended_runs_on_the_loop() -> None:
    backend = OnLoop()
    run_on(1, lambda: arrived_before_the_last_one_ended(backend))
    assert backend.threads[-2:] == [LOOP, LOOP]


async def sent_together(backend: OnLoop) -> None:
    """Once measured short, four requests that arrive together."""
    async with relayed(backend) as scheduler:
        await one_by_one(scheduler, LOOP_WARMUP_BATCHES)
        together = sent(scheduler, [arrived(value) for value in range(20, 24)])
        await asyncio.wait_for(asyncio.gather(*together), 5)
    assert backend.ran[-4:] == [20.0, 21.0, 22.0, 23.0]


def test_requests_that_arrive_together_go_to_the_instance_thread() -> None:
    backend = OnLoop()
    run_on(2, lambda: sent_together(backend))
    # The first finds the model quiet; the others arrived before it ended.
    assert backend.threads[-4:] == [LOOP, "m_0", "m_0", "m_0"]


def test_on_one_cpu_requests_that_arrive_together_run_on_the_loop() -> None:
    backend = OnLoop()
    run_on(1, lambda: sent_together(backend))
    assert backend.threads[-4:] == [LOOP] * 4


def test_a_busy_instance_keeps_an_idle_one_on_its_own_thread() -> None:
    async def scenario() -> None:
        first, second = OnLoop(holds=[100]), OnLoop()
        async with relayed(first, second) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES)  # all on the first, the idle one
            held = sent(scheduler, [request(100)])  # arrived before the last one ended
            await asyncio.sleep(0.01)
            await one_by_one(scheduler, 1, first=7)
            assert second.threads == ["m_1"]
            first.release()
            await asyncio.wait_for(asyncio.gather(*held), 5)
        assert first.threads[-1] == "m_0"

    run_on(2, scenario)


def test_on_one_cpu_queued_requests_wait_for_every_busy_instance_then_run_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        first, second = OnLoop(holds=[100]), OnLoop(holds=[200])
        async with relayed(first, second) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES)  # all on the first, the idle one
            held = await sent_to_the_thread(scheduler, monkeypatch, 100)  # on the first
            held += await sent_to_the_thread(scheduler, monkeypatch, 200)  # on the second
            waiting = sent(scheduler, [arrived(7)])
            second.release()  # the second is done, the first still busy: 7 waits
            await asyncio.wait_for(held[1], 5)
            await asyncio.sleep(0.02)
            assert not waiting[0].done()
            first.release()
            await asyncio.wait_for(asyncio.gather(*held, *waiting), 5)
        assert second.threads == ["m_1"]
        assert first.threads[-2:] == ["m_0", LOOP]

    run_on(1, scenario)


def test_a_refused_request_on_the_loop_fails_alone_and_the_next_runs() -> None:
    async def scenario() -> None:
        backend = OnLoop()
        async with relayed(backend) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES)
            with pytest.raises(InvalidArgument, match="refused"):
                await scheduler.submit(arrived(-1))
            await one_by_one(scheduler, 1, first=3)
        assert backend.threads[-2:] == [LOOP, LOOP]

    run(scenario)


def test_a_failing_observer_on_the_loop_fails_only_its_request() -> None:
    async def scenario() -> None:
        backend = OnLoop()
        async with relayed(backend, broken=30) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES)
            with pytest.raises(Internal, match="delivering the batch failed"):
                await scheduler.submit(arrived(30))
            await one_by_one(scheduler, 1, first=31)
        assert backend.threads[-2:] == [LOOP, LOOP]

    run(scenario)


def test_nothing_runs_on_the_loop_while_an_instance_is_lent() -> None:
    async def scenario() -> None:
        first, second = OnLoop(), OnLoop()
        async with relayed(first, second) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES)
            lease = scheduler.lend_here()  # the first, idle: lent to a model's call
            assert lease is not None
            try:
                await one_by_one(scheduler, 1, first=9)
            finally:
                lease.give_back()
            assert second.threads == ["m_1"]
            await one_by_one(scheduler, 1, first=10)
        assert first.threads[-1] == LOOP

    run_on(2, scenario)


def test_on_one_cpu_a_request_waits_for_a_lent_instance_then_runs_on_the_loop() -> None:
    async def scenario() -> None:
        first, second = OnLoop(), OnLoop()
        async with relayed(first, second) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES)
            lease = scheduler.lend_here()  # the first, idle: lent to a model's call
            assert lease is not None
            try:
                waiting = sent(scheduler, [arrived(9)])
                await asyncio.sleep(0.02)
                assert not waiting[0].done()
            finally:
                lease.give_back()
            await asyncio.wait_for(asyncio.gather(*waiting), 5)
        assert second.threads == []
        assert first.threads[-1] == LOOP

    run_on(1, scenario)


async def counting_passes(reported: list[tuple[int, Timestamps]], counts: list[int]) -> None:
    """Note, once a pass of the loop, how many batches have been reported so far."""
    while True:
        counts.append(len(reported))
        await asyncio.sleep(0)  # its next step is in the loop's next pass


def test_on_one_cpu_requests_that_arrive_together_run_a_few_a_pass_in_their_order() -> None:
    """So a request that arrives meanwhile is read and queued behind them, rather than waiting
    for every one read before it to run, then for its own turn in the next burst."""
    backend = OnLoop()
    reported: list[tuple[int, Timestamps]] = []
    counts: list[int] = []

    async def scenario() -> None:
        async with relayed(backend, reported=reported) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES)
            counter = asyncio.ensure_future(counting_passes(reported, counts))
            together = sent(scheduler, [arrived(value) for value in range(20, 30)])
            await asyncio.sleep(0)  # the first pass: four of them ran
            later = sent(scheduler, [arrived(99)])
            answers = await asyncio.wait_for(asyncio.gather(*together, *later), 5)
            counter.cancel()
        assert [answer["y"][0, 0] for answer in answers] == [v * 2 for v in [*range(20, 30), 99]]

    run_on(1, scenario)
    assert backend.ran[-11:] == [*range(20, 30), 99]
    assert backend.threads[-11:] == [LOOP] * 11
    per_pass = [after - before for before, after in itertools.pairwise(counts)]
    assert max(per_pass) == RUNS_PER_PASS
    assert sum(per_pass) == 11 and len([runs for runs in per_pass if runs]) == 3


def test_on_one_cpu_a_stop_serves_the_requests_waiting_for_the_next_pass() -> None:
    backend = OnLoop()

    async def scenario() -> None:
        async with relayed(backend) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES)
            together = sent(scheduler, [arrived(value) for value in range(40, 50)])
            await asyncio.sleep(0)  # four ran, six wait for the next passes
            assert scheduler.pending() == 10 - RUNS_PER_PASS
            await scheduler.stop()  # no pass of the loop in between, but its own waits
            assert all(task.done() for task in together)
            assert [task.result()["y"][0, 0] for task in together] == [v * 2 for v in range(40, 50)]

    run_on(1, scenario)
    assert backend.threads[-10:] == [LOOP] * 10


def test_on_one_cpu_no_instance_is_lent_while_requests_wait_for_their_pass() -> None:
    async def scenario() -> None:
        async with relayed(OnLoop()) as scheduler:
            await one_by_one(scheduler, LOOP_WARMUP_BATCHES)
            together = sent(scheduler, [arrived(value) for value in range(60, 66)])
            await asyncio.sleep(0)  # four ran, two wait for the next pass
            lent = scheduler.lend_here()
            if lent is not None:  # it would hold them up until given back
                lent.give_back()
            assert lent is None
            await asyncio.wait_for(asyncio.gather(*together), 5)
            lease = scheduler.lend_here()
            assert lease is not None
            lease.give_back()

    run_on(1, scenario)
