"""The dynamic batcher, which is also the default scheduler (with batching off, as in Triton).

Requests wait in one priority queue per model version (`queue.py`). Each instance runs a
worker; a free worker takes the forming lock, gathers the next batch (shape-compatible
requests in priority order, up to `max_batch_size`; sent at once when full, when a preferred
size is reached, when the next request cannot join, or when it reaches the largest preferred
size (Triton's rules, `_preferred_cut`); else after `max_queue_delay`, counted from the oldest
request), releases the lock so the next free worker can form the following
batch, and executes it with the shared batch core (`batch.py`). Each caller awaits its own
future. With batching off, a request that finds the queue empty and an instance idle runs at
once on that instance in its own task (`idle.py`).

The forming worker sleeps on one future with one timer for the batch's deadline; `submit`
wakes it only when the arrivals since it slept could complete the batch, so a batch costs
a few wake-ups however many requests it gathers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from inferd.core.batch_io import BatchIO
from inferd.core.errors import Unavailable
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import Instance
from inferd.scheduling.adaptive import SloController
from inferd.scheduling.batch import (
    Batch,
    BatchCallback,
    BatchRunner,
    Wakeup,
    fail_undelivered,
    select_outputs,
    split_rows,
    stack_inputs,
    wanted_outputs,
)
from inferd.scheduling.delay_hook import delay_gate
from inferd.scheduling.dynamic_settings import BatchingSettings
from inferd.scheduling.idle import IdleSlots, Slot
from inferd.scheduling.ordering import ResponseOrder, Turn
from inferd.scheduling.queue import PriorityQueue, Queued
from inferd.scheduling.ragged import ragged_inputs, ragged_signature, ragged_split


def _signature(request: InferRequest) -> tuple[Any, ...]:
    """Requests batch together only when every input has the same non-batch shape."""
    return tuple(sorted((name, array.shape[1:]) for name, array in request.inputs.items()))


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
        kind = _Stacked(list(output_names)) if io is None else _Ragged(list(output_names), io)
        self._runner = BatchRunner(kind, on_batch, self._slo)
        self._signature = _signature if io is None else ragged_signature(io.ragged)
        # The forming worker's sleep: woken by its deadline, or by `submit` once `_wake_rows`
        # more rows (or a request of another shape) arrived.
        self._wakeup = Wakeup()
        self._wake_rows = 0
        self._wake_signature: tuple[Any, ...] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._idle = IdleSlots()
        # Triton's test hook (`delay_hook.py`): no batch until N requests are queued.
        names = ", ".join(instance.name for instance in self._instances)
        self._delay = delay_gate(f"batcher thread of {names}")
        # Only where each request runs alone anyway: with a delay of 0, the requests that
        # arrive together still batch, and would not if the first ran at once.
        self._run_at_once = not settings.enabled and self._delay is None

    @property
    def slo(self) -> SloController | None:
        """The adaptive controller when the model sets a latency target (for tests and docs)."""
        return self._slo

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._worker(Slot(instance)), name=f"worker:{instance.name}")
            for instance in self._instances
            for _ in range(instance.pipeline_depth)
        ]

    def pending(self) -> int:
        return len(self._queue)

    async def submit(self, request: InferRequest) -> dict[str, Array]:
        if self._stopping:
            raise Unavailable(f"model '{request.model_name}' is being unloaded")
        if self._run_at_once and not len(self._queue) and (slot := self._idle.lend()):
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

    async def _run_now(self, slot: Slot, request: InferRequest) -> dict[str, Array]:
        now = time.monotonic_ns()
        request.timestamps.queued = now
        rows = request.batch_size() if self._settings.max_batch_size > 0 else 1
        future = asyncio.get_running_loop().create_future()
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
        loop = asyncio.get_running_loop()
        if not settings.enabled:
            rows = request.batch_size() if settings.max_batch_size > 0 else 1
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
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _worker(self, slot: Slot) -> None:
        while True:
            turn: Turn | None = None
            self._idle.add(slot)
            async with self._forming:
                batch = await self._next_batch(slot)
                self._queue.dispatched(batch)
                if self._order is not None and batch:
                    turn = self._order.reserve()
            if not batch:
                return
            self._idle.take(slot)
            try:
                await self._execute(slot.instance, batch, turn)
            except Exception as exc:
                fail_undelivered(slot.instance.name, batch, exc)

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
            cut = _preferred_cut(batch, settings.preferred_batch_sizes)
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

    async def _execute(self, instance: Instance, batch: list[Queued], turn: Turn | None) -> None:
        for queued in batch:
            if queued.timer is not None:
                queued.timer.cancel()
        live: list[Queued | None] = [queued for queued in batch if not queued.future.done()]
        # Empty when every request timed out or was abandoned while the batch formed.
        deliver = await self._runner.run(instance, live) if live else _nothing
        if turn is None:
            deliver()
        else:
            assert self._order is not None  # a turn is only handed out when ordering
            self._order.complete(turn, deliver)


class _Stacked:
    """The dynamic batcher's `BatchKind`: requests stacked along the batch axis, each
    answered from its own rows."""

    def __init__(self, output_names: list[str]) -> None:
        self._output_names = output_names

    def inputs(self, batch: Batch[Queued]) -> dict[str, Array]:
        return stack_inputs([queued.request.inputs for queued in batch.calls])

    def output_names(self, batch: Batch[Queued]) -> list[str]:
        return wanted_outputs(batch.calls, self._output_names)

    def split(self, batch: Batch[Queued], outputs: dict[str, Array]) -> list[dict[str, Array]]:
        # One request has the batch to itself, batch axis or none.
        return [outputs] if len(batch.calls) == 1 else split_rows(batch, outputs)

    def one_by_one(self, batch: Batch[Queued]) -> list[list[Queued | None]]:
        return [[queued] for queued in batch.calls]

    def finish(self, call: Queued, outputs: dict[str, Array]) -> dict[str, Array]:
        return select_outputs(call.request, outputs)


class _Ragged(_Stacked):
    """`_Stacked` for a model with ragged inputs, batch inputs or batch outputs."""

    def __init__(self, output_names: list[str], io: BatchIO) -> None:
        super().__init__(output_names)
        self._io = io

    def inputs(self, batch: Batch[Queued]) -> dict[str, Array]:
        return ragged_inputs(self._io, batch)

    def split(self, batch: Batch[Queued], outputs: dict[str, Array]) -> list[dict[str, Array]]:
        return ragged_split(self._io, batch, outputs)


def _nothing() -> None:
    pass


def _preferred_cut(batch: list[Queued], preferred: tuple[int, ...]) -> int:
    """How many requests from the head to send now by Triton's preferred-size rules (0: wait).

    The largest preferred size reached wins. Failing that, a batch that the next request
    would push past the largest preferred size goes without it (that request then waits for
    its own delay), and a head request at or past that size alone goes at once.
    """
    if not preferred:
        return 0
    largest = preferred[-1]
    rows = 0
    cut = 0
    for count, queued in enumerate(batch, 1):
        if rows and not cut and rows + queued.rows > largest:
            return count - 1
        rows += queued.rows
        if rows in preferred:
            cut = count
    return cut or (len(batch) if rows >= largest else 0)
