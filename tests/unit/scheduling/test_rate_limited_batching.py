"""A dynamic batch whose instance waits for rate limiter resources keeps growing with the
requests queued meanwhile, by the rules it was formed by, and runs once they are granted."""

from __future__ import annotations

import asyncio

from inferd.scheduling.dynamic import DynamicBatcher
from inferd.scheduling.rate_limiter import RateLimiter
from tests.unit.scheduling.fakes import Doubler, instances, request, settings
from tests.unit.scheduling.test_rate_limiter import cpu, gate, group, settle

NEEDS_R = '{ name: "R", count: 1 }'


async def batches_while_held(
    config: str, widths: list[int], rows: list[int] | None = None
) -> tuple[list[list[float]], int]:
    """Requests of these widths and rows (values 0, 1, ...) reach a model whose one instance
    needs the one copy of R, while another instance holds R; the first column of each batch
    that ran once it gave R back, and the requests pending before that."""
    limiter = RateLimiter()
    holder = gate(limiter, cpu("other"), NEEDS_R)
    backend = Doubler()
    [model] = instances(backend)
    [gated] = limiter.register([(model, group(NEEDS_R))]).instances
    scheduler = DynamicBatcher([gated], settings(config), ["y"])
    scheduler.start()
    await limiter.acquire(holder)
    calls = []
    for value, width in enumerate(widths):
        sent = request(value, rows=rows[value] if rows else 1, width=width)
        calls.append(asyncio.ensure_future(scheduler.submit(sent)))
        await settle()
    pending = scheduler.pending()
    limiter.release(holder)
    await asyncio.gather(*calls)
    await scheduler.stop()
    model.close()
    assert all(count == 0 for count in limiter._allocated.values())
    return backend.batches, pending


def run(config: str, widths: list[int], rows: list[int] | None = None) -> list[list[float]]:
    batches, _ = asyncio.run(asyncio.wait_for(batches_while_held(config, widths, rows), 10))
    return batches


def test_requests_queued_while_the_batch_waits_join_it() -> None:
    assert run("dynamic_batching { }", [4] * 6) == [[0, 1, 2, 3, 4, 5]]


def test_a_waiting_batch_grows_to_max_batch_size_then_the_next_one_forms() -> None:
    batches = run("dynamic_batching { }", [4] * 10)
    assert batches == [[0, 1, 2, 3, 4, 5, 6, 7], [8, 9]]


def test_without_a_queue_delay_a_waiting_batch_stops_at_a_preferred_size() -> None:
    batches = run("dynamic_batching { preferred_batch_size: [ 2, 4 ] }", [4] * 6)
    assert batches == [[0, 1], [2, 3, 4, 5]]
    batches = run("dynamic_batching { preferred_batch_size: [ 3 ] }", [4] * 5)
    assert batches == [[0, 1, 2], [3, 4]]


def test_with_a_queue_delay_a_waiting_batch_grows_past_preferred_sizes() -> None:
    config = """dynamic_batching { preferred_batch_size: [ 2, 4 ]
        max_queue_delay_microseconds: 5000000 }"""
    batches = run(config, [4] * 6)
    assert batches == [[0, 1, 2, 3], [4, 5]]


def test_a_waiting_batch_does_not_grow_past_the_largest_preferred_size() -> None:
    batches = run("dynamic_batching { preferred_batch_size: [ 2 ] }", [4] * 3, rows=[1, 2, 1])
    assert batches == [[0], [1, 1], [2]]


def test_requests_in_a_waiting_batch_count_as_pending_until_it_runs() -> None:
    _, pending = asyncio.run(
        asyncio.wait_for(batches_while_held("dynamic_batching { }", [4] * 3), 10)
    )
    assert pending == 3


def test_a_request_of_other_shapes_ends_the_growth() -> None:
    batches = run("dynamic_batching { }", [4, 4, 8, 4])
    assert batches == [[0, 1], [2], [3]]


def test_a_request_joined_to_a_waiting_batch_does_not_time_out_in_the_queue() -> None:
    config = """dynamic_batching { default_queue_policy {
        timeout_action: REJECT, default_timeout_microseconds: 1 } }"""
    batches = run(config, [4] * 3)
    assert batches == [[0, 1, 2]]


def test_without_batching_each_request_runs_alone() -> None:
    assert sorted(run("", [4] * 3)) == [[0], [1], [2]]
