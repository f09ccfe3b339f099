"""The dynamic batcher, which is also the default scheduler (with batching off, as in Triton).

Requests wait in one priority queue per model version (`queue.py`). Each instance runs a
worker; a free worker takes the forming lock, gathers the next batch (shape-compatible
requests in priority order, up to `max_batch_size`; sent at once when full, when a preferred
size is reached, when the next request cannot join, or when it reaches the largest preferred
size (Triton's rules, `preferred_cut`); else after `max_queue_delay`, counted from the oldest
request), releases the lock so the next free worker can form the following
batch, and executes it with the shared batch core (`batch.py`). Each caller awaits its own
future. With batching off, a request that finds the queue empty and an instance idle runs at
once on that instance in its own task (`idle.py`), or on the thread of a caller that waits
for it there (a model's call to another model: `lease.py`). A batch whose instance must wait
for rate limiter resources keeps growing meanwhile (`_grow`).

With batching off and every instance running its batches one after another on its own
thread (`Stages`: the in-process instances, not rate-limited or remote ones), there are no
workers: the instances' own completions move the requests from the queue to the instances,
and an idle one is lent from there (`relay.py`).

A process that may use only one CPU has no overlap between the loop and the instances'
threads to keep: there a worker runs its formed batch on the loop itself (`BatchRunner.run_here`)
where the instance allows it (`RunsOnLoop`: its backend declares it safe, its batches measured
short, and no rate limiter stands before it), as the relay does with batching off. The batches
run there keep feeding the instance's measure of its batch times (`ModelInstance._run`). After
each, the worker lets the loop write the answers and read the arrivals before it forms the
next batch (`catch_up.py`).

The forming worker sleeps on one future with one timer for the batch's deadline; `submit`
wakes it only when the arrivals since it slept could complete the batch, so a batch costs
a few wake-ups however many requests it gathers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, cast

from inferd.core.errors import Unavailable
from inferd.core.running_loop import running_loop
from inferd.core.types import Array, InferRequest
from inferd.core.usable_cpus import usable_cpus
from inferd.instances.instance import Instance, RunsHere, RunsOnLoop, Stages
from inferd.scheduling.adaptive import SloController
from inferd.scheduling.batch import (
    BatchCallback,
    BatchRunner,
    Deliver,
    Wakeup,
    fail_undelivered,
)
from inferd.scheduling.catch_up import let_loop_catch_up
from inferd.scheduling.claim import Claim
from inferd.scheduling.delay_hook import delay_gate
from inferd.scheduling.dynamic_settings import BatchingSettings
from inferd.scheduling.idle import IdleSlots, Slot
from inferd.scheduling.lease import Lease, Lender
from inferd.scheduling.ordering import ResponseOrder, Turn
from inferd.scheduling.preferred import preferred_cut, preferred_growth
from inferd.scheduling.queue import PriorityQueue, Queued
from inferd.scheduling.ragged import ragged_signature
from inferd.scheduling.rate_limiter import Gate
from inferd.scheduling.relay import Relay
from inferd.scheduling.stacked import RaggedKind, StackedRunner


def _signature(request: InferRequest) -> tuple[Any, ...]:
    """Requests batch together only when every input has the same non-batch shape."""
    inputs = request.inputs
    if len(inputs) == 1:  # most models: no sort to make (0.3 us less per request)
        ((name, array),) = inputs.items()
        return ((name, array.shape[1:]),)
    return tuple(sorted((name, array.shape[1:]) for name, array in inputs.items()))


class DynamicBatcher:
    """The scheduler of a model without sequence batching: one priority queue, and one worker
    per instance that forms the next batch from it and runs it.

    With `dynamic_batching` off it still queues, but every batch is one request. Results are
    handed back as each batch finishes, or in formation order with `preserve_ordering`; with
    a latency target (`inferd.latency_slo_ms`) an `SloController` steers the queue delay and
    the batch cap.
    """

    def __init__(
        self,
        instances: Sequence[Instance],
        settings: BatchingSettings,
        output_names: Sequence[str],
        on_batch: BatchCallback | None = None,
    ) -> None:
        self._instances = list(instances)
        self._settings = settings
        self._queue = PriorityQueue(settings)
        self._forming = asyncio.Lock()
        self._order = ResponseOrder() if settings.preserve_ordering else None
        self._slo = (
            SloController(
                settings.latency_slo_ns,
                settings.max_queue_delay_ns,
                settings.max_batch_size,
                time.monotonic_ns(),
            )
            if settings.latency_slo_ns
            else None
        )
        io = settings.batch_io
        self._runner: BatchRunner[Queued] = (
            StackedRunner(list(output_names), on_batch, self._slo)
            if io is None
            else BatchRunner(RaggedKind(list(output_names), io), on_batch, self._slo)
        )
        self._signature = _signature if io is None else ragged_signature(io.ragged)
        # The forming worker's sleep: woken by its deadline, or by `submit` once `_wake_rows`
        # more rows (or a request of another shape) arrived.
        self._wakeup = Wakeup()
        self._wake_rows = 0
        self._wake_signature: tuple[Any, ...] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._idle = IdleSlots()
        self._awaiting: dict[Slot, list[Queued]] = {}  # batches waiting for their resources
        # Triton's test hook (`delay_hook.py`): no batch until N requests are queued.
        names = ", ".join(instance.name for instance in self._instances)
        self._delay = delay_gate(f"batcher thread of {names}")
        # Only where each request runs alone anyway: with a delay of 0, the requests that
        # arrive together still batch, and would not if the first ran at once.
        self._run_at_once = not settings.enabled and self._delay is None
        self._batched = settings.max_batch_size > 0
        # Whether a waiting caller may run a request on its own thread (`lend_here`).
        self._here = all(isinstance(instance, RunsHere) for instance in self._instances)
        # One usable CPU: an instance's thread cannot overlap the loop, so a short batch runs
        # on the loop rather than being handed over (`_execute`), as the relay's requests do.
        self._one_cpu = usable_cpus() == 1
        staging = [instance for instance in self._instances if isinstance(instance, Stages)]
        self._relay = (
            Relay(staging, self._runner, self._queue, self._batched, self._one_cpu)
            if self._run_at_once and len(staging) == len(self._instances)
            else None
        )

    @property
    def slo(self) -> SloController | None:
        """The adaptive controller when the model sets a latency target (for tests and docs)."""
        return self._slo

    def start(self) -> None:
        if self._relay is not None:
            return  # the instances' completions take the requests from the queue
        slots = [
            Slot(instance) for instance in self._instances for _ in range(instance.pipeline_depth)
        ]
        self._workers = [
            asyncio.create_task(self._worker(slot), name=f"worker:{slot.instance.name}")
            for slot in slots
        ]

    def pending(self) -> int:
        """Requests not yet executing: queued, in a batch waiting for resources, or handed to
        an instance behind the batch it runs (Triton's pending count)."""
        if self._relay is not None:
            return self._relay.pending()
        waiting = self._awaiting.values()
        return len(self._queue) + sum(not q.future.done() for batch in waiting for q in batch)

    async def submit(self, request: InferRequest) -> dict[str, Array]:
        if self._stopping:
            raise Unavailable(f"model '{request.model_name}' is being unloaded")
        if self._relay is not None:
            return await self._relay.submit(request)
        if (slot := self._lend()) is not None:
            return await self._run_now(slot, request)
        queued = self._enqueue(request)
        if self._wakeup.sleeping:
            self._wake_rows -= queued.rows
            if self._wake_rows <= 0 or queued.signature != self._wake_signature:
                self._wakeup.wake()
        try:
            return await queued.future
        except asyncio.CancelledError:  # its client went away: it leaves the queue now
            self._queue.withdraw(queued)
            raise

    def lend_here(self) -> Lease | None:
        """An idle instance for one request that its caller runs on its own thread (`Lease`),
        when `submit` would run that request at once and the instances can run elsewhere;
        None when it must take `submit`'s path."""
        if not self._here or self._stopping:
            return None
        lender: Lender = self._relay or self._idle
        slot = self._relay.lend() if self._relay is not None else self._lend()
        if slot is None:
            return None
        instance = cast(RunsHere, slot.instance)  # `_here`: every instance is
        future = running_loop().create_future()
        return Lease(self._runner, lender, slot, instance, future, self._batched)

    def _lend(self) -> Slot | None:
        """An idle instance for a request to run on at once, when nothing waits before it."""
        if self._run_at_once and not len(self._queue):
            return self._idle.lend()
        return None

    async def _run_now(self, slot: Slot, request: InferRequest) -> dict[str, Array]:
        now = time.monotonic_ns()
        request.timestamps.queued = now
        rows = request.batch_size() if self._batched else 1
        future = running_loop().create_future()
        call = Queued(request, future, now, rows, queued=False)  # never in the queue
        try:
            try:
                deliver = await self._runner.run(slot.instance, [call])
            finally:
                self._idle.give_back(slot)
            deliver()
        except Exception as exc:
            fail_undelivered(slot.instance.name, [call], exc)
        return call.future.result()

    def _enqueue(self, request: InferRequest) -> Queued:
        settings = self._settings
        now = time.monotonic_ns()
        request.timestamps.queued = now
        loop = running_loop()
        if not settings.enabled:
            rows = request.batch_size() if self._batched else 1
            queued = Queued(request, loop.create_future(), now, rows)
            self._queue.push(queued)
            return queued
        level = settings.level_index(request.parameters)
        timeout = self._queue.policy(level).timeout_ns(request.parameters)
        queued = Queued(
            request,
            loop.create_future(),
            now,
            request.batch_size(),
            self._signature(request),
            level,
        )
        self._queue.enqueue(queued, timeout)
        return queued

    async def stop(self) -> None:
        self._stopping = True
        self._wakeup.wake()
        if self._relay is not None:
            await self._relay.stop()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _worker(self, slot: Slot) -> None:
        # Batches of one cannot grow: a gate then takes its resources as it executes.
        gate = slot.instance if isinstance(slot.instance, Gate) and self._settings.enabled else None
        # A rate-limited instance (a `Gate`) is no `RunsOnLoop`: its batches wait for their
        # resources, and run on its thread.
        on_loop = slot.instance if self._one_cpu and isinstance(slot.instance, RunsOnLoop) else None
        while True:
            turn: Turn | None = None
            claim: Claim | None = None
            self._idle.add(slot)
            async with self._forming:
                batch = await self._next_batch(slot)
                if gate is not None and batch:
                    claim = Claim(gate)
                    if claim.granted is not None:
                        self._awaiting[slot] = batch
                        await self._grow(batch, claim)
                self._queue.dispatched(batch)
                if self._order is not None and batch:
                    turn = self._order.reserve()
            if not batch:
                return
            self._idle.take(slot)
            try:
                if claim is not None:
                    await claim.wait()
                    self._awaiting.pop(slot, None)
                await self._execute(claim or slot.instance, batch, turn, on_loop)
            except Exception as exc:
                fail_undelivered(slot.instance.name, batch, exc)
            finally:
                if claim is not None:
                    self._awaiting.pop(slot, None)
                    claim.drop()  # a no-op once the batch ran on it

    async def _grow(self, batch: list[Queued], claim: Claim) -> None:
        """While the batch waits for its instance's resources, add the queued requests that
        can join it, by the rules it was formed by, until it is full (up to the largest
        preferred size), or, without a queue delay, reaches a preferred size (as Triton fills
        a payload waiting in its rate limiter). It keeps the forming
        lock meanwhile, being the batch that arrivals would join; a batch that can grow no
        more lets it go and waits."""
        granted = claim.granted
        assert granted is not None  # only a claim still waiting grows
        settings, slo = self._settings, self._slo
        preferred = settings.preferred_batch_sizes
        cap = slo.batch_cap if slo else settings.max_batch_size
        if preferred:  # Triton's payload is saturated by a request that would pass them all
            cap = min(cap, preferred[-1])
        # As in Triton, a preferred size completes the batch only without a queue delay.
        stops = () if (slo.delay_ns if slo else settings.max_queue_delay_ns) else preferred
        rows = sum(queued.rows for queued in batch)
        self._hold(batch)
        if rows in stops:
            return
        granted.add_done_callback(self._wake)
        try:
            while True:
                grown_from = len(batch)
                rows, blocked = self._queue.fill(batch, rows, cap, time.monotonic_ns())
                if cut := preferred_growth(batch, grown_from, stops):
                    self._queue.give_back(batch[cut:])
                    del batch[cut:]
                    blocked = True
                self._hold(batch)
                if blocked or rows >= cap or granted.done() or self._stopping:
                    return
                await self._sleep(None, 1, batch[0].signature)
        finally:
            granted.remove_done_callback(self._wake)

    def _hold(self, batch: list[Queued]) -> None:
        """Out of the queue and its timeouts, as a formed batch is; `pending` still counts it."""
        self._queue.dispatched(batch)
        _stop_timers(batch)

    def _wake(self, _: object) -> None:
        self._wakeup.wake()

    async def _next_batch(self, slot: Slot) -> list[Queued]:
        """The next batch to run on `slot`, or [] once stopping with nothing left."""
        settings = self._settings
        slo = self._slo
        max_rows = 1 if not settings.enabled else slo.batch_cap if slo else settings.max_batch_size
        delay = slo.delay_ns if slo else settings.max_queue_delay_ns
        batch: list[Queued] = []
        rows = 0
        while True:
            if slot.lent:
                await self._idle.wait_back(slot)
            if self._delay is not None:
                if self._delay.holds(len(self._queue)) and not self._stopping:
                    await self._sleep(None, 1, None)
                    continue
                self._delay, self._run_at_once = None, not settings.enabled
            now = time.monotonic_ns()
            rows, blocked = self._queue.fill(batch, rows, max_rows, now)
            if not batch:
                if self._stopping:
                    return batch
                await self._sleep(None, 1, None)
                continue
            deadline = batch[0].enqueued_ns + delay
            # As in Triton, a delay of 0 never counts as exceeded: the preferred sizes still
            # cut what is queued, and the rest goes at once anyway.
            if self._stopping or (delay and now >= deadline):
                return batch
            cut = preferred_cut(batch, settings.preferred_batch_sizes)
            if cut:
                self._queue.give_back(batch[cut:])
                return batch[:cut]
            if blocked or rows >= max_rows or not delay:
                return batch
            await self._sleep(deadline, self._rows_to_wake(rows, max_rows), batch[0].signature)

    def _rows_to_wake(self, rows: int, max_rows: int) -> int:
        """Rows that must arrive before the batch could be sent: the next preferred or full."""
        for size in self._settings.preferred_batch_sizes:
            if size > rows:
                return min(size, max_rows) - rows
        return max_rows - rows

    async def _sleep(
        self, deadline_ns: int | None, wake_rows: int, signature: tuple[Any, ...] | None
    ) -> None:
        self._wake_rows = wake_rows
        self._wake_signature = signature
        await self._wakeup.sleep(deadline_ns)

    async def _execute(
        self,
        instance: Instance,
        batch: list[Queued],
        turn: Turn | None,
        on_loop: RunsOnLoop | None,
    ) -> None:
        """Run `batch` on `instance` and deliver it (in its `turn`, when ordering). With
        `on_loop` (the same instance, on one CPU) a batch runs here on the loop while the
        instance's batches are short: handing it to the instance's thread would only add two
        wake-ups and the switches between the threads on that one CPU. After such a batch the loop
        catches up (`catch_up.py`) before the worker forms the next."""
        _stop_timers(batch)
        live: list[Queued | None] = [queued for queued in batch if not queued.future.done()]
        here = on_loop if live and on_loop is not None and on_loop.short() else None
        # Empty when every request timed out or was abandoned while the batch formed.
        if not live:
            deliver: Deliver = _nothing
        elif here is not None:
            _, deliver = self._runner.run_here(here, live)
        else:
            deliver = await self._runner.run(instance, live)
        if turn is None:
            deliver()
        else:
            assert self._order is not None  # a turn is only handed out when ordering
            self._order.complete(turn, deliver)
        if here is not None:  # it held the loop: answers and arrivals go before the next batch
            await let_loop_catch_up()


def _nothing() -> None:
    pass


def _stop_timers(batch: list[Queued]) -> None:
    for queued in batch:
        if queued.timer is not None:
            queued.timer.cancel()
