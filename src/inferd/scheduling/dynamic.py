"""The dynamic batcher, which is also the default scheduler (with batching off, as in Triton).

Requests wait in one priority queue per model version (`queue.py`). Each instance runs a
worker; a free worker takes the forming lock, gathers the next batch (shape-compatible
requests in priority order, up to `max_batch_size`; sent at once when full, when a preferred
size is reached, or when the next request cannot join; else after `max_queue_delay`, counted
from the oldest request), releases the lock so the next free worker can form the following
batch, and executes. Each caller awaits its own future.

The forming worker sleeps on one future with one timer for the batch's deadline; `submit`
wakes it only when the arrivals since it slept could complete the batch, so a batch costs
a few wake-ups however many requests it gathers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.core.errors import InferdError, Internal, InvalidArgument, Unavailable
from inferd.core.types import Array, InferRequest, Timestamps
from inferd.instances.instance import ExecutionResult, ModelInstance
from inferd.scheduling.adaptive import SloController
from inferd.scheduling.ordering import ResponseOrder, Slot
from inferd.scheduling.queue import Pending, PriorityQueue
from inferd.scheduling.settings import BatchingSettings

BatchCallback = Callable[[int, Timestamps], None]  # rows, compute marks of the batch
Answer = dict[str, Array] | InferdError  # what one request of a batch gets back

logger = logging.getLogger(__name__)


def _signature(request: InferRequest) -> tuple[Any, ...]:
    """Requests batch together only when every input has the same non-batch shape."""
    return tuple(sorted((name, array.shape[1:]) for name, array in request.inputs.items()))


class DynamicBatcher:
    def __init__(
        self,
        instances: Sequence[ModelInstance],
        settings: BatchingSettings,
        output_names: Sequence[str],
        on_batch: BatchCallback | None = None,
    ) -> None:
        self._instances = list(instances)
        self._settings = settings
        self._output_names = list(output_names)
        self._on_batch = on_batch
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
        # The forming worker's sleep: woken by its deadline, or by `submit` once `_wake_rows`
        # more rows (or a request of another shape) arrived.
        self._waiter: asyncio.Future[None] | None = None
        self._wake_rows = 0
        self._wake_signature: tuple[Any, ...] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def slo(self) -> SloController | None:
        """The adaptive controller when the model sets a latency target (for tests and docs)."""
        return self._slo

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._worker(instance), name=f"worker:{instance.name}")
            for instance in self._instances
        ]

    def pending(self) -> int:
        return len(self._queue)

    async def submit(self, request: InferRequest) -> dict[str, Array]:
        if self._stopping:
            raise Unavailable(f"model '{request.model_name}' is being unloaded")
        pending = self._enqueue(request)
        waiter = self._waiter
        if waiter is not None:
            self._wake_rows -= pending.rows
            if self._wake_rows <= 0 or pending.signature != self._wake_signature:
                self._wake()
        return await pending.future

    def _enqueue(self, request: InferRequest) -> Pending:
        settings = self._settings
        now = time.monotonic_ns()
        request.timestamps.queued = now
        loop = asyncio.get_running_loop()
        if not settings.enabled:
            rows = request.batch_size() if settings.max_batch_size > 0 else 1
            pending = Pending(request, rows, (), loop.create_future(), now)
            self._queue.push(pending)
            return pending
        level = settings.level_index(request.parameters)
        timeout = self._queue.policy(level).timeout_ns(request.parameters)
        pending = Pending(
            request, request.batch_size(), _signature(request), loop.create_future(), now, level
        )
        self._queue.push(pending)
        if timeout:
            pending.deadline_ns = now + timeout
            if not self._queue.policy(level).delay_on_timeout:
                pending.timer = loop.call_later(timeout / 1e9, self._queue.expire, pending)
        return pending

    def _wake(self) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def stop(self) -> None:
        self._stopping = True
        self._wake()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _worker(self, instance: ModelInstance) -> None:
        while True:
            slot: Slot | None = None
            async with self._forming:
                batch = await self._next_batch()
                self._queue.dispatched(batch)
                if self._order is not None and batch:
                    slot = self._order.reserve()
            if not batch:
                return
            try:
                await self._execute(instance, batch, slot)
            except Exception as exc:  # e.g. a failing observer: the worker must survive it
                logger.exception("delivering a batch of '%s' failed", instance.name)
                _fail(batch, Internal(f"delivering the batch failed: {exc}"))

    async def _next_batch(self) -> list[Pending]:
        """The next batch to run, or [] once stopping with nothing left."""
        settings = self._settings
        slo = self._slo
        max_rows = 1 if not settings.enabled else slo.batch_cap if slo else settings.max_batch_size
        delay = slo.delay_ns if slo else settings.max_queue_delay_ns
        batch: list[Pending] = []
        rows = 0
        while True:
            now = time.monotonic_ns()
            rows, blocked = self._queue.fill(batch, rows, max_rows, now)
            if not batch:
                if self._stopping:
                    return batch
                await self._sleep(None, 1, None)
                continue
            deadline = batch[0].enqueued_ns + delay
            if blocked or rows >= max_rows or now >= deadline or self._stopping:
                return batch
            cut = _preferred_cut(batch, settings.preferred_batch_sizes)
            if cut:
                self._queue.give_back(batch[cut:])
                return batch[:cut]
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
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        self._wake_rows = wake_rows
        self._wake_signature = signature
        timer = None
        if deadline_ns is not None:
            timer = loop.call_later((deadline_ns - time.monotonic_ns()) / 1e9, self._wake)
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _execute(
        self, instance: ModelInstance, batch: list[Pending], slot: Slot | None
    ) -> None:
        for pending in batch:
            if pending.timer is not None:
                pending.timer.cancel()
        live = [pending for pending in batch if not pending.future.done()]
        if not live:  # every request timed out or was abandoned while the batch formed
            self._finish(slot, _nothing)
            return
        compute = Timestamps(compute_start=time.monotonic_ns())
        try:
            result = await instance.execute(
                _stack_inputs(live), self._batch_outputs(live), _batch_requests(live)
            )
            per_request = self._split(live, result.outputs)
        except InvalidArgument as exc:
            if len(live) == 1:
                refused = exc  # `exc` is unbound after this block; the delivery may run later
                self._finish(slot, lambda: _fail(live, refused))
                return
            # The model refused one request's input: run them one by one, so only it fails.
            deliveries = [await self._run_alone(instance, pending) for pending in live]
            self._finish(slot, lambda: _call_all(deliveries))
            return
        except Exception as exc:
            error = as_inferd_error(exc)
            self._finish(slot, lambda: _fail(live, error))
            return
        self._finish(slot, lambda: self._deliver(live, per_request, compute, result))

    async def _run_alone(self, instance: ModelInstance, pending: Pending) -> Callable[[], None]:
        """Execute one request by itself; returns what delivers its answer."""
        compute = Timestamps(compute_start=time.monotonic_ns())
        try:
            result = await instance.execute(
                pending.request.inputs, self._batch_outputs([pending]), _batch_requests([pending])
            )
            outputs = self._split([pending], result.outputs)
        except Exception as exc:
            return functools.partial(_fail, [pending], as_inferd_error(exc))
        return functools.partial(self._deliver, [pending], outputs, compute, result)

    def _finish(self, slot: Slot | None, deliver: Callable[[], None]) -> None:
        if slot is None:
            deliver()
        else:
            assert self._order is not None  # a slot is only handed out when ordering
            self._order.complete(slot, deliver)

    def _deliver(
        self,
        batch: list[Pending],
        per_request: list[Answer],
        compute: Timestamps,
        result: ExecutionResult,
    ) -> None:
        compute.compute_input_end = result.compute_start_ns
        compute.compute_output_start = result.compute_end_ns
        compute.compute_end = end = time.monotonic_ns()
        rows = sum(p.rows for p in batch)
        if self._on_batch is not None:
            self._on_batch(rows, compute)
        for pending, answer in zip(batch, per_request, strict=True):
            pending.request.timestamps.copy_compute(compute)
            if isinstance(answer, InferdError):
                pending.fail(answer)
            elif not pending.future.done():
                pending.future.set_result(answer)
        if self._slo is not None:
            latencies = [end - (p.request.timestamps.received or p.enqueued_ns) for p in batch]
            execution = result.compute_end_ns - result.compute_start_ns
            self._slo.record(latencies, rows, execution, end)

    def _batch_outputs(self, batch: list[Pending]) -> list[str]:
        wanted: set[str] = set()
        for pending in batch:
            requested = pending.request.outputs
            if requested is None:
                return self._output_names
            wanted.update(output.name for output in requested)
        return [name for name in self._output_names if name in wanted]

    def _split(self, batch: list[Pending], outputs: BatchOutputs) -> list[Answer]:
        if isinstance(outputs, list):
            if len(outputs) != len(batch):
                raise Internal(f"the backend answered {len(outputs)} of {len(batch)} requests")
            return [
                answer
                if isinstance(answer, InferdError)
                else select_outputs(pending.request, answer)
                for pending, answer in zip(batch, outputs, strict=True)
            ]
        if len(batch) == 1:
            return [select_outputs(batch[0].request, outputs)]
        total = sum(p.rows for p in batch)
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise Internal(f"output '{name}' has {array.shape} for a batch of {total} rows")
        split: list[Answer] = []
        start = 0
        for pending in batch:
            end = start + pending.rows
            split.append(
                select_outputs(pending.request, {n: a[start:end] for n, a in outputs.items()})
            )
            start = end
        return split


def _nothing() -> None:
    pass


def _call_all(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        call()


def as_inferd_error(exc: Exception) -> InferdError:
    # Anything but an InferdError is a fault of ours, not the client's: report it, keep serving.
    return exc if isinstance(exc, InferdError) else Internal(f"batch failed: {exc}")


def _preferred_cut(batch: list[Pending], preferred: tuple[int, ...]) -> int:
    """How many requests from the head make the largest preferred size reached (0: none)."""
    if not preferred:
        return 0
    rows = 0
    cut = 0
    for count, pending in enumerate(batch, 1):
        rows += pending.rows
        if rows in preferred:
            cut = count
    return cut


def _batch_requests(batch: Sequence[Pending]) -> list[BatchRequest]:
    """Each request's row range and what it carries, as the backend sees it."""
    described: list[BatchRequest] = []
    start = 0
    for pending in batch:
        request = pending.request
        described.append(BatchRequest(start, start + pending.rows, request.id, request.parameters))
        start += pending.rows
    return described


def _stack_inputs(batch: list[Pending]) -> dict[str, Array]:
    first = batch[0].request.inputs
    if len(batch) == 1:
        return first
    return {name: np.concatenate([p.request.inputs[name] for p in batch]) for name in first}


def select_outputs(request: InferRequest, outputs: dict[str, Array]) -> dict[str, Array]:
    """The outputs the request asked for (all of them when it named none)."""
    if request.outputs is None:
        return outputs
    return {o.name: outputs[o.name] for o in request.outputs}


def _fail(batch: list[Pending], error: InferdError) -> None:
    for pending in batch:
        pending.fail(error)
