"""The rate limiter's accounting: copies per pool (largest need, or the server's flags),
refusals at registration, resources taken and given back, waiters served by scaled priority,
global against per-device pools, cancellation, and unregistering."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import pytest

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ModelInstanceGroup, parse_pbtxt
from inferd.core.types import Array
from inferd.instances.instance import ExecutionResult, Instance
from inferd.scheduling.rate_limiter import (
    GLOBAL,
    Gate,
    RateLimiter,
    Registration,
    ServerResource,
)


class Idle:
    """An instance whose batches return at once (or raise `fail`)."""

    pipeline_depth = 1

    def __init__(self, name: str, device: Device, fail: Exception | None = None) -> None:
        self.name = name
        self.device = device
        self.fail = fail
        self.closed = False

    async def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        started: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        if self.fail is not None:
            raise self.fail
        return ExecutionResult({}, 0, 0)

    def close(self) -> None:
        self.closed = True


def group(resources: str, priority: int = 0) -> ModelInstanceGroup:
    """An instance group whose rate_limiter lists `resources` (pbtxt)."""
    config = parse_pbtxt(
        'name: "m" instance_group [{ rate_limiter { '
        f"resources [ {resources} ] priority: {priority} }} }}]"
    )
    return config.instance_group[0]


def cpu(name: str = "i") -> Idle:
    return Idle(name, Device(DeviceKind.CPU))


def gpu(index: int, name: str = "g") -> Idle:
    return Idle(name, Device(DeviceKind.GPU, index))


def remote_gpu(node: str, index: int = 0, name: str = "r") -> Idle:
    """A GPU instance on another cluster node, as the cluster's placer describes it."""
    return Idle(name, Device(DeviceKind.GPU, index, node))


def gate(limiter: RateLimiter, instance: Instance, resources: str, priority: int = 0) -> Gate:
    [registered] = limiter.register([(instance, group(resources, priority))]).instances
    assert isinstance(registered, Gate)
    return registered


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def waiting(limiter: RateLimiter, *gates: Gate) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(limiter.acquire(g)) for g in gates]


# ---- copies and refusals --------------------------------------------------------------------


def test_copies_default_to_the_largest_need_per_device_and_global() -> None:
    limiter = RateLimiter()
    gate(limiter, gpu(0), '{ name: "R" count: 4 }, { name: "G" global: true count: 1 }')
    gate(limiter, gpu(0), '{ name: "R" count: 2 }')
    gate(limiter, gpu(1), '{ name: "R" count: 3 }, { name: "G" global: true count: 2 }')
    assert dict(limiter.copies) == {(0, "R"): 4, (1, "R"): 3, (GLOBAL, "G"): 2}


def test_cpu_instances_count_as_device_0() -> None:
    limiter = RateLimiter([ServerResource("R", 2, 0)])
    gate(limiter, cpu(), '{ name: "R" count: 2 }')
    assert dict(limiter.copies) == {(0, "R"): 2}


def test_server_flags_override_per_device_and_device_specific() -> None:
    # Triton's example: R1:10, R2:5 on device 0, R2:8 on device 1, R3:2 (global).
    server = [ServerResource.parse(text) for text in ("R1:10", "R2:5:0", "R2:8:1", "R3:2")]
    limiter = RateLimiter(server)
    needs = '{ name: "R1" count: 1 }, { name: "R2" count: 1 }, { name: "R3" global: true count: 1 }'
    gate(limiter, gpu(0), needs)
    gate(limiter, gpu(1), needs)
    assert dict(limiter.copies) == {
        (0, "R1"): 10,
        (0, "R2"): 5,
        (1, "R1"): 10,
        (1, "R2"): 8,
        (GLOBAL, "R3"): 2,
    }


@pytest.mark.parametrize(
    ("flags", "limited_to"),
    [(["resource1:3", "resource2:2"], 3), (["resource1:10:10", "resource2:2"], 0), ([], None)],
    ids=["fewer", "other-device", "no-flags"],
)
def test_a_need_beyond_the_servers_copies_is_refused_and_registers_nothing(
    flags: list[str], limited_to: int | None
) -> None:
    limiter = RateLimiter([ServerResource.parse(text) for text in flags])
    needs = '{ name: "resource1" count: 4 }, { name: "resource2" global: true count: 2 }'
    if limited_to is None:  # without flags every need is covered
        gate(limiter, gpu(0), needs)
        return
    with pytest.raises(InvalidArgument) as caught:
        fits = group('{ name: "resource2" global: true count: 1 }')
        limiter.register([(gpu(0), fits), (gpu(0), group(needs))])
    assert caught.value.message == (
        f'Resource count for "resource1" is limited to {limited_to} which will prevent '
        "scheduling of one or more model instances, the minimum required count is 4"
    )
    assert dict(limiter.copies) == {}


def test_a_resource_both_global_and_per_device_is_refused() -> None:
    limiter = RateLimiter()
    gate(limiter, gpu(0), '{ name: "R" global: true count: 1 }')
    with pytest.raises(InvalidArgument, match='Resource "R" is present as both global and'):
        limiter.register([(gpu(0), group('{ name: "R" count: 1 }'))])
    assert dict(limiter.copies) == {(GLOBAL, "R"): 1}


def test_instances_naming_no_resource_are_not_gated() -> None:
    limiter = RateLimiter()
    plain = cpu()
    empty = parse_pbtxt('name: "m" instance_group [{ count: 1 }]').instance_group[0]
    registration = limiter.register([(plain, empty)])
    assert registration.instances == [plain]
    assert dict(limiter.copies) == {}


def test_unregistering_shrinks_the_copies_to_the_needs_left() -> None:
    limiter = RateLimiter()
    small = limiter.register([(cpu(), group('{ name: "R" count: 1 }'))])
    big = limiter.register([(cpu(), group('{ name: "R" count: 3 }, { name: "S" count: 1 }'))])
    assert dict(limiter.copies) == {(0, "R"): 3, (0, "S"): 1}
    big.close()
    assert dict(limiter.copies) == {(0, "R"): 1}
    small.close()
    assert dict(limiter.copies) == {}


def test_each_cluster_nodes_devices_have_their_own_pools() -> None:
    limiter = RateLimiter()
    needs = '{ name: "R" count: 1 }, { name: "G" global: true count: 1 }'
    gate(limiter, gpu(0), needs)
    gate(limiter, remote_gpu("node-a"), needs)
    gate(limiter, remote_gpu("node-b"), needs)
    gate(limiter, remote_gpu("node-b", 1), needs)
    assert dict(limiter.copies) == {
        (0, "R"): 1,
        (("node-a", 0), "R"): 1,
        (("node-b", 0), "R"): 1,
        (("node-b", 1), "R"): 1,
        (GLOBAL, "G"): 1,
    }


def test_a_server_flags_device_names_that_index_on_every_node() -> None:
    limiter = RateLimiter([ServerResource("R", 3, 1), ServerResource("R", 2, 0)])
    gate(limiter, remote_gpu("node-a", 1), '{ name: "R" count: 1 }')
    gate(limiter, remote_gpu("node-b", 0), '{ name: "R" count: 1 }')
    assert dict(limiter.copies) == {(("node-a", 1), "R"): 3, (("node-b", 0), "R"): 2}


def test_gpu_0_of_two_nodes_runs_at_once_and_of_one_node_in_turn() -> None:
    async def test() -> None:
        limiter = RateLimiter([ServerResource("R", 1)])
        needs = '{ name: "R" count: 1 }'
        on_a = gate(limiter, remote_gpu("node-a", name="a"), needs)
        on_b = gate(limiter, remote_gpu("node-b", name="b"), needs)
        also_on_a = gate(limiter, remote_gpu("node-a", name="a2"), needs)
        assert limiter.try_acquire(on_a) and limiter.try_acquire(on_b)
        assert not limiter.try_acquire(also_on_a)
        assert limiter.allocated((("node-a", 0), "R")) == 1
        assert limiter.allocated((("node-b", 0), "R")) == 1
        [blocked] = waiting(limiter, also_on_a)
        limiter.release(on_b)
        await settle()
        assert not blocked.done()
        limiter.release(on_a)
        await settle()
        assert blocked.done()

    run(test)


@pytest.mark.parametrize("text", ["R", "R:x", ":1", "R:1:2:3", "R:-1", "R:1:-2"])
def test_malformed_server_resources_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--rate-limit-resource"):
        ServerResource.parse(text)


# ---- taking and giving back -----------------------------------------------------------------


def test_a_shared_resource_of_one_lets_one_instance_run_at_a_time() -> None:
    async def test() -> None:
        limiter = RateLimiter([ServerResource("R", 1)])
        first = gate(limiter, cpu("a"), '{ name: "R" count: 1 }')
        second = gate(limiter, cpu("b"), '{ name: "R" count: 1 }')
        await limiter.acquire(first)
        assert limiter.allocated((0, "R")) == 1
        [blocked] = waiting(limiter, second)
        await settle()
        assert not blocked.done()
        limiter.release(first)
        await settle()
        assert blocked.done() and limiter.allocated((0, "R")) == 1
        limiter.release(second)
        assert limiter.allocated((0, "R")) == 0
        assert (first.executions, second.executions) == (1, 1)

    run(test)


def test_per_device_resources_do_not_exclude_other_devices_but_global_ones_do() -> None:
    async def test() -> None:
        limiter = RateLimiter()
        zero = gate(limiter, gpu(0), '{ name: "D" count: 1 }')
        one = gate(limiter, gpu(1), '{ name: "D" count: 1 }')
        await limiter.acquire(zero)
        await asyncio.wait_for(limiter.acquire(one), 1)  # device 1 has its own copy
        limiter.release(zero)
        limiter.release(one)

        shared = RateLimiter()
        zero = gate(shared, gpu(0), '{ name: "G" global: true count: 1 }')
        one = gate(shared, gpu(1), '{ name: "G" global: true count: 1 }')
        await shared.acquire(zero)
        [blocked] = waiting(shared, one)
        await settle()
        assert not blocked.done()
        shared.release(zero)
        await settle()
        assert blocked.done()

    run(test)


def test_waiters_go_by_executions_times_priority_then_arrival() -> None:
    async def test() -> None:
        limiter = RateLimiter()
        holder = gate(limiter, cpu("h"), '{ name: "R" count: 1 }')
        low = gate(limiter, cpu("low"), '{ name: "R" count: 1 }', priority=2)
        high = gate(limiter, cpu("high"), '{ name: "R" count: 1 }', priority=1)
        later = gate(limiter, cpu("later"), '{ name: "R" count: 1 }', priority=1)
        for g in (low, high):  # one execution each: scaled 2 for `low`, 1 for `high`
            await limiter.acquire(g)
            limiter.release(g)
        later.executions = 1  # as `high`, but it arrives after it
        order: list[str] = []
        await limiter.acquire(holder)

        async def turn(g: Gate) -> None:
            await limiter.acquire(g)
            order.append(g.name)
            await asyncio.sleep(0)
            limiter.release(g)

        tasks = [asyncio.create_task(turn(g)) for g in (low, high, later)]
        await settle()
        assert order == []
        limiter.release(holder)
        await asyncio.gather(*tasks)
        assert order == ["high", "later", "low"]

    run(test)


def test_an_instance_with_more_work_competes_for_what_it_gave_back() -> None:
    async def test() -> None:
        limiter = RateLimiter()
        busy = gate(limiter, cpu("busy"), '{ name: "R" count: 1 }')
        waiter = gate(limiter, cpu("waiter"), '{ name: "R" count: 1 }', priority=2)
        waiter.executions = 1  # scaled 2; `busy` is scaled 1 once its batch is done
        await limiter.acquire(busy)
        [blocked] = waiting(limiter, waiter)
        await settle()

        async def next_batch() -> None:  # its worker asks again at once, as a batcher does
            limiter.release(busy)
            await limiter.acquire(busy)

        again = asyncio.create_task(next_batch())
        await settle()
        assert again.done() and not blocked.done()
        limiter.release(busy)  # scaled 2 now, as the waiter: the one waiting longer goes
        await settle()
        assert blocked.done()

    run(test)


def test_the_first_waiter_that_does_not_fit_holds_back_smaller_ones() -> None:
    async def test() -> None:
        limiter = RateLimiter([ServerResource("R", 2)])
        holder = gate(limiter, cpu("h"), '{ name: "R" count: 1 }')
        big = gate(limiter, cpu("big"), '{ name: "R" count: 2 }')
        small = gate(limiter, cpu("small"), '{ name: "R" count: 1 }')
        small.executions = 1  # arrives first, but its turn comes after `big`'s
        await limiter.acquire(holder)
        big_task, small_task = waiting(limiter, big, small)
        await settle()
        assert not big_task.done() and not small_task.done()  # one copy free, `big` first
        limiter.release(holder)
        await settle()
        assert big_task.done() and not small_task.done()
        limiter.release(big)
        await settle()
        assert small_task.done()

    run(test)


def test_a_cancelled_waiter_leaves_the_queue_and_keeps_nothing() -> None:
    async def test() -> None:
        limiter = RateLimiter()
        first = gate(limiter, cpu("a"), '{ name: "R" count: 1 }')
        gone = gate(limiter, cpu("b"), '{ name: "R" count: 1 }')
        after = gate(limiter, cpu("c"), '{ name: "R" count: 1 }')
        await limiter.acquire(first)
        gone_task, after_task = waiting(limiter, gone, after)
        await settle()
        gone_task.cancel()
        await settle()
        limiter.release(first)
        await settle()
        assert gone_task.cancelled() and after_task.done()
        assert limiter.allocated((0, "R")) == 1
        limiter.release(after)
        assert limiter.allocated((0, "R")) == 0

    run(test)


def test_a_gate_gives_its_resources_back_when_the_batch_fails() -> None:
    async def test() -> None:
        limiter = RateLimiter()
        failing = Idle("f", Device(DeviceKind.CPU), RuntimeError("boom"))
        registration: Registration = limiter.register([(failing, group('{ name: "R" count: 1 }'))])
        [gated] = registration.instances
        with pytest.raises(RuntimeError, match="boom"):
            await gated.execute({}, [], [])
        assert limiter.allocated((0, "R")) == 0
        assert await gate(limiter, cpu(), '{ name: "R" count: 1 }').execute({}, [], [])
        gated.close()
        assert failing.closed

    run(test)
