"""`let_loop_catch_up`: the loop runs what is ready, pass after pass, until a pass is quiet;
never more than `MAX_PASSES` passes, however busy it stays."""

from __future__ import annotations

import asyncio
import time

import pytest

from inferd.scheduling import catch_up
from inferd.scheduling.catch_up import MAX_PASSES, let_loop_catch_up
from tests.unit.scheduling.test_dynamic import run

# A quiet pass here: under a millisecond, which a pass with nothing to run keeps on a loaded
# machine too (20 µs need not); a busy one twice that.
QUIET_NS = 1_000_000


@pytest.fixture(autouse=True)
def _quiet_below_a_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catch_up, "QUIET_PASS_NS", QUIET_NS)


def busy_chain(links: int | None, ran: list[int]) -> None:
    """A callback that keeps the loop busy for longer than a quiet pass, then schedules the
    next link for the next pass; `links` of them (None: no end)."""
    end = time.monotonic_ns() + 2 * QUIET_NS
    while time.monotonic_ns() < end:
        pass
    ran.append(len(ran))
    if links is None or len(ran) < links:
        asyncio.get_running_loop().call_soon(busy_chain, links, ran)


def counting(passes: list[int]) -> None:
    """A quick callback that counts the passes through the loop, one each."""
    passes.append(len(passes))
    asyncio.get_running_loop().call_soon(counting, passes)


def test_the_loop_runs_until_a_pass_finds_nothing_else_to_do() -> None:
    async def scenario() -> None:
        ran: list[int] = []
        passes: list[int] = []
        asyncio.get_running_loop().call_soon(busy_chain, 1, ran)
        asyncio.get_running_loop().call_soon(counting, passes)
        await let_loop_catch_up()
        assert ran == [0]
        assert len(passes) == 2  # the busy pass, then the quiet one
        assert MAX_PASSES > 2

    run(scenario)


def test_a_loop_that_stays_busy_is_left_after_the_last_pass() -> None:
    async def scenario() -> None:
        ran: list[int] = []
        asyncio.get_running_loop().call_soon(busy_chain, None, ran)
        await let_loop_catch_up()
        assert len(ran) == MAX_PASSES
        await asyncio.sleep(0)  # the chain goes on without it
        assert len(ran) == MAX_PASSES + 1

    run(scenario)
