"""Triton's scheduler test hooks: TRITONSERVER_DELAY_SCHEDULER and
TRITONSERVER_BACKLOG_DELAY_SCHEDULER hold batch formation back until N requests are queued."""

from __future__ import annotations

import asyncio
import logging

import pytest

from inferd.core.types import Array, InferRequest
from inferd.scheduling.delay_hook import BACKLOG_VARIABLE, DELAY_VARIABLE, DelayGate, delay_gate
from inferd.scheduling.dynamic import DynamicBatcher
from tests.unit.scheduling.fakes import Doubler, instances, request, settings
from tests.unit.scheduling.test_sequence import (
    Accumulator,
    batcher,
    sequence_settings,
    step,
    synchronous,
)

SETTLE = 0.05  # long enough for a free worker to form a batch, were it allowed to


@pytest.mark.parametrize("value", [None, "", "0", "-3", "three"])
def test_unset_zero_or_garbage_is_off(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(DELAY_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(DELAY_VARIABLE, value)
    assert delay_gate("x", with_backlog=True) is None


def test_gate_opens_once_enough_are_queued_and_stays_open() -> None:
    gate = DelayGate("x", 3, backlog=2)
    assert gate.holds(2, 5)
    assert gate.holds(3, 1)
    assert not gate.holds(3, 2)
    assert not gate.holds(0, 0)  # open for good


def test_backlog_count_only_with_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DELAY_VARIABLE, "2")
    monkeypatch.setenv(BACKLOG_VARIABLE, "5")
    with_backlog, without = delay_gate("x", with_backlog=True), delay_gate("x")
    assert with_backlog is not None and without is not None
    assert with_backlog.holds(2, 4) and not without.holds(2, 0)


def test_the_log_says_what_is_delayed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(DELAY_VARIABLE, "4")
    monkeypatch.setenv(BACKLOG_VARIABLE, "2")
    with caplog.at_level(logging.DEBUG, logger="inferd.scheduling.delay_hook"):
        delay_gate("scheduler thread m_0", with_backlog=True)
    assert "Delaying scheduler thread m_0 until 4 queued requests..." in caplog.messages
    assert "Delaying scheduler thread m_0 until 2 backlog queued requests..." in caplog.messages


# ---- the dynamic batcher ------------------------------------------------------------------


async def _send_one_by_one(
    scheduler: DynamicBatcher, requests: list[InferRequest]
) -> list[asyncio.Task[dict[str, Array]]]:
    """Each request queued after the previous one had every chance to be batched alone."""
    tasks: list[asyncio.Task[dict[str, Array]]] = []
    for sent in requests:
        tasks.append(asyncio.create_task(scheduler.submit(sent)))
        await asyncio.sleep(SETTLE)
    return tasks


@pytest.mark.parametrize(
    ("extra", "batches"),
    [
        # Delay 0: without the hook each request would run as soon as it arrives.
        ("dynamic_batching { }", [[0.0, 1.0, 2.0], [3.0]]),
        # Batching off (the default scheduler): queued, then one at a time, in order.
        ("", [[0.0], [1.0], [2.0], [3.0]]),
        # The preferred size cuts what the delay let pile up.
        ("dynamic_batching { preferred_batch_size: [ 2 ] }", [[0.0, 1.0], [2.0], [3.0]]),
    ],
)
def test_dynamic_batcher_forms_nothing_until_n_are_queued(
    monkeypatch: pytest.MonkeyPatch, extra: str, batches: list[list[float]]
) -> None:
    monkeypatch.setenv(DELAY_VARIABLE, "3")

    async def scenario() -> None:
        backend = Doubler()
        models = instances(backend)
        scheduler = DynamicBatcher(models, settings(extra), ["y"])
        scheduler.start()
        tasks = await _send_one_by_one(scheduler, [request(0), request(1)])
        assert not backend.batches and scheduler.pending() == 2
        tasks += await _send_one_by_one(scheduler, [request(2)])
        await asyncio.gather(*tasks)
        # Open for good: the next request does not wait for three more.
        await asyncio.wait_for(scheduler.submit(request(3)), 5)
        assert backend.batches == batches
        await scheduler.stop()
        models[0].close()

    asyncio.run(scenario())


def test_dynamic_batcher_stops_while_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DELAY_VARIABLE, "10")

    async def scenario() -> None:
        backend = Doubler()
        models = instances(backend)
        scheduler = DynamicBatcher(models, settings("dynamic_batching { }"), ["y"])
        scheduler.start()
        waiting = asyncio.create_task(scheduler.submit(request(1)))
        await asyncio.sleep(SETTLE)
        await asyncio.wait_for(scheduler.stop(), 5)  # what is queued still runs
        assert (await waiting)["y"].tolist() == [[2.0] * 4]
        models[0].close()

    asyncio.run(scenario())


# ---- the sequence batcher -----------------------------------------------------------------


@synchronous
async def test_direct_sequence_batcher_waits_for_n_across_instances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DELAY_VARIABLE, "3")
    backends = Accumulator(), Accumulator()
    scheduler = batcher(sequence_settings(max_batch_size=2), *backends)
    # Sequences 1 and 3 take instance 0's slots, 2 instance 1's: 3 queued in all.
    tasks = []
    for key in (1, 2):
        tasks.append(asyncio.create_task(scheduler.submit(step(key, key, start=True))))
        await asyncio.sleep(SETTLE)
    assert not any(b.batches for b in backends)
    tasks.append(asyncio.create_task(scheduler.submit(step(3, 3, start=True))))
    await asyncio.gather(*tasks)
    assert sorted(b["CORRID"][:, 0].tolist() for b in backends[0].batches) == [[1, 3]]
    assert [b["CORRID"][:, 0].tolist() for b in backends[1].batches] == [[2]]
    await scheduler.stop()


@synchronous
async def test_sequence_batcher_waits_for_the_backlog_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DELAY_VARIABLE, "1")
    monkeypatch.setenv(BACKLOG_VARIABLE, "2")
    backend = Accumulator()
    scheduler = batcher(sequence_settings(max_batch_size=0), backend)  # one slot
    first = asyncio.create_task(scheduler.submit(step(1, 1, start=True, end=True)))
    second = asyncio.create_task(scheduler.submit(step(2, 2, start=True)))  # backlog: 1
    await asyncio.sleep(SETTLE)
    assert not backend.batches
    third = asyncio.create_task(scheduler.submit(step(3, 2, end=True)))  # backlog: 2
    assert [int(r["y"].ravel()[0]) for r in await asyncio.gather(first, second, third)] == [1, 2, 5]
    assert [int(b["CORRID"].ravel()[0]) for b in backend.batches] == [1, 2, 2]
    await scheduler.stop()


@synchronous
async def test_oldest_counts_the_sequences_ready_on_its_instance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DELAY_VARIABLE, "2")
    backend = Accumulator()
    scheduler = batcher(sequence_settings("oldest { max_candidate_sequences: 4 }"), backend)
    first = asyncio.create_task(scheduler.submit(step(1, 1, start=True)))
    more = asyncio.create_task(scheduler.submit(step(2, 1)))  # same sequence: still one ready
    await asyncio.sleep(SETTLE)
    assert not backend.batches
    other = asyncio.create_task(scheduler.submit(step(10, 2, start=True)))
    assert [int(r["y"][0, 0]) for r in await asyncio.gather(first, more, other)] == [1, 3, 10]
    assert [b["CORRID"][:, 0].tolist() for b in backend.batches] == [[1, 2], [1]]
    await scheduler.stop()
