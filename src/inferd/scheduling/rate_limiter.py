"""Triton's rate limiter (`--rate-limit execution_count`): an instance executes a batch only
while the resources its group names are free, across the instances of every model.

A group asks, per instance, for counts of named resources (`instance_group [{ rate_limiter {
resources [{ name, count, global }] priority } }]`). A resource is per device (each GPU has
its own copies; CPU instances count as device 0, as in Triton) unless `global`. On a cluster
each node's devices are its own: a device elsewhere is keyed by its node too, so GPU 0 of two
nodes are two pools (a `DEVICE` of the flag below names that index on every node). The copies
available are what `--rate-limit-resource NAME:COUNT[:DEVICE]` gives (no DEVICE: every
device); without any such flag, the largest count a loaded instance asks for, so that every
instance can run. With the flags, a resource they leave out has no copies, and a model that
asks for more than there is is refused at load, with Triton's message.

An instance takes its resources before its batch executes and gives them back after; one
that cannot waits (the dynamic batcher claims them as its batch is formed, so that the batch
grows while it waits: `claim.py`). Waiting instances of every model are served by scaled
priority (its executions so far times its `priority`, lowest first, so priority 2 gets half
the turns of priority 1), then in arrival order; the first of them that does not fit holds
back those behind it, so a large request is not starved by small ones. Resources given back
are handed out on the next turn of the event loop, so an instance with more work competes
for them. Instances that name no resource are not limited at all, and with the limiter off
nothing here runs.


Registration comes from the loader's thread, acquiring and releasing from the event loop:
registering swaps in a new table of copies in one assignment, and never frees a waiter (a
waiter always fits once the executing instances release, as the copies cover every need).
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from inferd.backends.base import BatchRequest, Device
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ModelInstanceGroup
from inferd.core.running_loop import running_loop
from inferd.core.types import Array
from inferd.instances.instance import ExecutionResult, Instance

GLOBAL: Final = -1  # the pool of global resources
# Where a pool is: GLOBAL, a device of this machine (its index, >= 0), or one on another
# cluster node (node, index).
Place = int | tuple[str, int]
Pool = tuple[Place, str]  # (place, resource name)
Needs = tuple[tuple[Pool, int], ...]  # what one execution of an instance holds


class RateLimitMode(enum.Enum):
    OFF = "off"
    EXECUTION_COUNT = "execution_count"


@dataclass(frozen=True, slots=True)
class ServerResource:
    """One `--rate-limit-resource`: `count` copies of `name` on `device` (None: on each)."""

    name: str
    count: int
    device: int | None = None

    @classmethod
    def parse(cls, text: str) -> ServerResource:
        """`NAME:COUNT[:DEVICE]`, as Triton's flag takes it; raises ValueError."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0]:
            raise ValueError(f"--rate-limit-resource '{text}' is not NAME:COUNT[:DEVICE]")
        try:
            numbers = [int(part) for part in parts[1:]]
        except ValueError:
            raise ValueError(
                f"--rate-limit-resource '{text}': COUNT and DEVICE must be integers"
            ) from None
        if any(number < 0 for number in numbers):
            raise ValueError(f"--rate-limit-resource '{text}': COUNT and DEVICE must be >= 0")
        return cls(parts[0], numbers[0], numbers[1] if len(numbers) == 2 else None)


class Registration:
    """A version's instances as its scheduler runs them, and their place in the limiter
    (given up at unload)."""

    def __init__(self, limiter: RateLimiter, instances: list[Instance], gates: list[Gate]) -> None:
        self.instances = instances
        self._limiter = limiter
        self._gates = gates

    def close(self) -> None:
        self._limiter.unregister(self._gates)


class RateLimiter:
    """The resource pools of one server, shared by every model's instances."""

    def __init__(self, server: Sequence[ServerResource] = ()) -> None:
        self._server = tuple(server)
        self._needs: dict[Gate, Needs] = {}  # of each registered gate
        self._copies: dict[Pool, int] = {}  # replaced whole, never changed in place
        self._allocated: dict[Pool, int] = {}
        self._waiting: list[tuple[int, int, Gate, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._registering = threading.Lock()

    @property
    def copies(self) -> Mapping[Pool, int]:
        """The copies of each resource now: (GLOBAL or device, name) -> count."""
        return self._copies

    def allocated(self, pool: Pool) -> int:
        return self._allocated.get(pool, 0)

    def register(self, instances: Iterable[tuple[Instance, ModelInstanceGroup]]) -> Registration:
        """Each instance (of its group) as its scheduler should run it: behind a `Gate` when
        the group names resources. Raises `InvalidArgument` (and registers none) when the
        server's copies cannot cover what they ask, or when a resource would be both global
        and per device."""
        scheduled: list[Instance] = []
        gates: list[Gate] = []
        for instance, group in instances:
            instance_needs = _needs(instance.device, group)
            if not instance_needs:
                scheduled.append(instance)
                continue
            gate = Gate(instance, self, instance_needs, max(group.rate_limiter.priority, 1))
            gates.append(gate)
            scheduled.append(gate)
        with self._registering:
            needs = dict(self._needs)
            needs.update((gate, gate.needs) for gate in gates)
            self._copies = self._covering(needs.values())
            self._needs = needs
        return Registration(self, scheduled, gates)

    def unregister(self, gates: Sequence[Gate]) -> None:
        with self._registering:
            needs = dict(self._needs)
            for gate in gates:
                needs.pop(gate, None)
            self._copies = self._covering(needs.values())
            self._needs = needs

    def _covering(self, needs: Iterable[Needs]) -> dict[Pool, int]:
        """The copies of each resource: the largest need, or what the server gives."""
        largest: dict[Pool, int] = {}
        for need in needs:
            for pool, count in need:
                largest[pool] = max(largest.get(pool, 0), count)
        global_names = {name for place, name in largest if place == GLOBAL}
        for place, name in largest:
            if place != GLOBAL and name in global_names:
                raise InvalidArgument(
                    f'Resource "{name}" is present as both global and device-specific '
                    "resource in the model configuration."
                )
        if not self._server:
            return largest
        copies = {pool: self._given(pool) for pool in largest}
        for pool, count in largest.items():
            if copies[pool] < count:
                raise InvalidArgument(
                    f'Resource count for "{pool[1]}" is limited to {copies[pool]} which will '
                    "prevent scheduling of one or more model instances, the minimum required "
                    f"count is {count}"
                )
        return copies

    def _given(self, pool: Pool) -> int:
        """The copies the server's flags give a pool (a global one: its largest, any device)."""
        place, name = pool
        device = place[1] if isinstance(place, tuple) else place
        return max(
            (
                resource.count
                for resource in self._server
                if resource.name == name
                and (device == GLOBAL or resource.device is None or resource.device == device)
            ),
            default=0,
        )

    # ---- on the event loop -------------------------------------------------------------------

    def try_acquire(self, gate: Gate) -> bool:
        """Take the gate's resources at once if no one waits and they are free."""
        if self._waiting or not self._fits(gate.needs):
            return False
        self._take(gate.needs)
        return True

    async def acquire(self, gate: Gate) -> None:
        """Take the gate's resources, waiting for its turn when they are not free."""
        waiter = self.enter(gate)
        if waiter is None:
            return
        try:
            await waiter
        except asyncio.CancelledError:
            self.leave(gate, waiter)
            raise

    def enter(self, gate: Gate) -> asyncio.Future[None] | None:
        """Take the gate's resources now (None), or join the waiters: the future resolves
        once they are taken for it."""
        if self.try_acquire(gate):
            return None
        waiter: asyncio.Future[None] = running_loop().create_future()
        heapq.heappush(self._waiting, (gate.scaled_priority, next(self._arrivals), gate, waiter))
        self._dispatch()
        return waiter

    def leave(self, gate: Gate, waiter: asyncio.Future[None] | None) -> None:
        """Give up what `enter` returned, unused: the resources or the place in line."""
        if waiter is None or (waiter.done() and not waiter.cancelled()):
            self._give_back(gate.needs)
        elif not waiter.done():
            waiter.cancel()
        self._dispatch()  # what it held, or its place in line, may have held back others

    def release(self, gate: Gate) -> None:
        """The gate's batch has run: its resources go to the next waiters.

        Handed out on the next turn of the event loop, not now: an instance with more work
        queued is back in line by then (its worker forms the next batch without waiting), and
        competes by priority with those already waiting, as Triton re-stages an instance
        with pending requests as it releases. Otherwise the waiters would always win, and
        priorities would only order instances that happen to wait at the same time."""
        gate.executions += 1
        self._give_back(gate.needs)
        if self._waiting:
            running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        waiting = self._waiting
        while waiting:
            gate, waiter = waiting[0][2], waiting[0][3]
            if waiter.done():  # cancelled while it waited
                heapq.heappop(waiting)
                continue
            if not self._fits(gate.needs):
                return
            heapq.heappop(waiting)
            self._take(gate.needs)
            waiter.set_result(None)

    def _fits(self, needs: Needs) -> bool:
        copies = self._copies  # read once: a registration may replace it
        allocated = self._allocated
        return all(allocated.get(pool, 0) + n <= copies.get(pool, 0) for pool, n in needs)

    def _take(self, needs: Needs) -> None:
        allocated = self._allocated
        for pool, count in needs:
            allocated[pool] = allocated.get(pool, 0) + count

    def _give_back(self, needs: Needs) -> None:
        allocated = self._allocated
        for pool, count in needs:
            allocated[pool] -= count


def _needs(device: Device, group: ModelInstanceGroup) -> Needs:
    place: Place = (device.node, device.index) if device.node else device.index
    return tuple(
        {
            # `global` is a Python keyword, so the field is read by name.
            (GLOBAL if getattr(resource, "global") else place, resource.name): resource.count
            for resource in group.rate_limiter.resources
            if resource.count > 0
        }.items()
    )


class Gate:
    """An instance whose batches wait for their resources: what the scheduler runs on in
    its place."""

    def __init__(self, inner: Instance, limiter: RateLimiter, needs: Needs, priority: int) -> None:
        self.name = inner.name
        self.device = inner.device
        self.pipeline_depth = inner.pipeline_depth
        self.needs = needs
        self.priority = priority
        self.executions = 0
        self.limiter = limiter
        self.inner = inner

    @property
    def scaled_priority(self) -> int:
        return self.executions * self.priority

    async def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        started: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        if not self.limiter.try_acquire(self):
            await self.limiter.acquire(self)
        return await self.execute_held(inputs, output_names, requests, started)

    async def execute_held(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        started: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        """`execute` on resources already taken for it (a granted `Claim`)."""
        try:
            return await self.inner.execute(inputs, output_names, requests, started)
        finally:
            self.limiter.release(self)

    def close(self) -> None:
        self.inner.close()
