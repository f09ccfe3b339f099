"""Triton's preferred-batch-size rules in the dynamic batcher (the cases of Triton's
qa/L0_batcher that concern them, with preferred sizes 2 and 6 as there)."""

from __future__ import annotations

import asyncio

from inferd.core.types import Array
from tests.unit.scheduling.fakes import Doubler, request, settings
from tests.unit.scheduling.test_dynamic import batcher, run

# A queue delay no test waits out: a request that completes was sent by a size rule.
BATCHING = "dynamic_batching {{ preferred_batch_size: [ 2, 6 ] max_queue_delay_microseconds: {} }}"
NEVER = BATCHING.format(600_000_000)
SHORT = BATCHING.format(300_000)


async def _queued(pending: asyncio.Future[dict[str, Array]]) -> None:
    """Let the event loop run until the submitted request is in the batcher's hands."""
    for _ in range(20):
        await asyncio.sleep(0.005)
    assert not pending.done()


def test_a_request_past_the_largest_preferred_size_runs_without_waiting() -> None:
    async def scenario() -> None:
        backend = Doubler()
        async with batcher(settings(NEVER), backend) as scheduler:
            await asyncio.wait_for(scheduler.submit(request(7, rows=7)), 60)
        assert backend.batches == [[7] * 7]

    run(scenario)


def test_a_pending_batch_runs_when_a_request_past_the_largest_preferred_size_arrives() -> None:
    async def scenario() -> None:
        backend = Doubler()
        async with batcher(settings(NEVER, max_batch_size=16), backend) as scheduler:
            first = asyncio.ensure_future(scheduler.submit(request(3, rows=3)))
            await _queued(first)
            second = scheduler.submit(request(7, rows=7))
            await asyncio.wait_for(asyncio.gather(first, second), 60)
        assert backend.batches == [[3] * 3, [7] * 7]

    run(scenario)


def test_the_request_that_would_pass_the_largest_preferred_size_waits_for_its_delay() -> None:
    async def scenario() -> None:
        backend = Doubler()
        async with batcher(settings(SHORT, max_batch_size=16), backend) as scheduler:
            first = asyncio.ensure_future(scheduler.submit(request(3, rows=3)))
            await _queued(first)
            second = asyncio.ensure_future(scheduler.submit(request(4, rows=4)))
            await first
            assert not second.done()  # 4 rows alone: below the largest preferred size
            await second
        assert backend.batches == [[3] * 3, [4] * 4]

    run(scenario)


def test_the_largest_preferred_size_is_cut_from_a_full_batch() -> None:
    async def scenario() -> None:
        backend = Doubler()
        async with batcher(settings(NEVER), backend) as scheduler:
            requests = [request(value, rows=2) for value in range(4)]  # 8 rows: full
            await asyncio.wait_for(asyncio.gather(*map(scheduler.submit, requests)), 60)
        assert backend.batches == [[0, 0, 1, 1, 2, 2], [3, 3]]

    run(scenario)


def test_without_a_queue_delay_preferred_sizes_still_cut_what_is_queued() -> None:
    async def scenario() -> None:
        backend = Doubler()
        config = settings("dynamic_batching { preferred_batch_size: [ 4, 6 ] }")
        async with batcher(config, backend) as scheduler:
            await asyncio.gather(*(scheduler.submit(request(value)) for value in range(5)))
        assert backend.batches == [[0, 1, 2, 3], [4]]

    run(scenario)
