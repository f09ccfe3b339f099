"""The dynamic batcher, which is also the default scheduler (with batching off, as in Triton).

Requests wait in one queue per model version. Each instance runs a worker; a free worker
takes the forming lock, gathers the next batch (shape-compatible requests from the head of
the queue, up to `max_batch_size`, dispatched at once on reaching a preferred size or after
`max_queue_delay_microseconds`), releases the lock so the next free worker can form the
following batch, and executes. Each caller awaits its own future.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferd.core.errors import InferdError, Internal, Unavailable
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import ModelInstance

BatchCallback = Callable[[int, int, int], None]  # rows, compute start ns, compute end ns


@dataclass(frozen=True, slots=True)
class BatchingSettings:
    max_batch_size: int
    enabled: bool
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_ns: int = 0

    @classmethod
    def from_config(cls, config: Any) -> BatchingSettings:
        enabled = config.max_batch_size > 0 and config.HasField("dynamic_batching")
        dynamic = config.dynamic_batching
        return cls(
            max_batch_size=config.max_batch_size,
            enabled=enabled,
            preferred_batch_sizes=tuple(sorted(set(dynamic.preferred_batch_size))),
            max_queue_delay_ns=int(dynamic.max_queue_delay_microseconds) * 1000,
        )


@dataclass(slots=True)
class _Pending:
    request: InferRequest
    rows: int
    signature: tuple[Any, ...]
    future: asyncio.Future[dict[str, Array]]
    enqueued_ns: int


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
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._forming = asyncio.Lock()
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False

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
        now = time.monotonic_ns()
        request.timestamps.queued = now
        rows = request.batch_size() if self._settings.max_batch_size > 0 else 1
        future: asyncio.Future[dict[str, Array]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, rows, _signature(request), future, now))
        self._wakeup.set()
        return await future

    async def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _worker(self, instance: ModelInstance) -> None:
        while True:
            async with self._forming:
                batch = await self._next_batch()
            if not batch:
                return
            await self._execute(instance, batch)

    async def _next_batch(self) -> list[_Pending]:
        while not self._queue:
            if self._stopping:
                return []
            self._wakeup.clear()
            await self._wakeup.wait()
        if not self._settings.enabled:
            return [self._queue.popleft()]
        deadline = self._queue[0].enqueued_ns + self._settings.max_queue_delay_ns
        while True:
            count, ready = self._candidate()
            remaining = deadline - time.monotonic_ns()
            if ready or remaining <= 0 or self._stopping:
                return [self._queue.popleft() for _ in range(count)]
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining / 1e9)

    def _candidate(self) -> tuple[int, bool]:
        """(requests from the head that would form the batch now, whether to send it at once)."""
        settings = self._settings
        head = self._queue[0]
        rows = 0
        count = 0
        preferred_count = 0
        for pending in self._queue:
            if pending.signature != head.signature or rows + pending.rows > settings.max_batch_size:
                break
            rows += pending.rows
            count += 1
            if rows in settings.preferred_batch_sizes:
                preferred_count = count
        if rows >= settings.max_batch_size or count < len(self._queue):
            return count, True  # full, or the next request cannot join this batch anyway
        if preferred_count:
            return preferred_count, True
        return count, False

    async def _execute(self, instance: ModelInstance, batch: list[_Pending]) -> None:
        batch = [pending for pending in batch if not pending.future.done()]
        if not batch:
            return
        try:
            result = await instance.execute(_stack_inputs(batch), self._batch_outputs(batch))
            per_request = self._split(batch, result.outputs)
        except InferdError as exc:
            _fail(batch, exc)
            return
        except Exception as exc:  # a fault of ours, not the client's: report it, keep serving
            _fail(batch, Internal(f"batch execution failed: {exc}"))
            return
        if self._on_batch is not None:
            self._on_batch(
                sum(p.rows for p in batch), result.compute_start_ns, result.compute_end_ns
            )
        for pending, outputs in zip(batch, per_request, strict=True):
            pending.request.timestamps.compute_start = result.compute_start_ns
            pending.request.timestamps.compute_end = result.compute_end_ns
            if not pending.future.done():
                pending.future.set_result(outputs)

    def _batch_outputs(self, batch: list[_Pending]) -> list[str]:
        wanted: set[str] = set()
        for pending in batch:
            requested = pending.request.outputs
            if requested is None:
                return self._output_names
            wanted.update(output.name for output in requested)
        return [name for name in self._output_names if name in wanted]

    def _split(self, batch: list[_Pending], outputs: dict[str, Array]) -> list[dict[str, Array]]:
        if len(batch) == 1:
            return [_select(batch[0].request, outputs)]
        total = sum(p.rows for p in batch)
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise Internal(f"output '{name}' has {array.shape} for a batch of {total} rows")
        split: list[dict[str, Array]] = []
        start = 0
        for pending in batch:
            end = start + pending.rows
            split.append(_select(pending.request, {n: a[start:end] for n, a in outputs.items()}))
            start = end
        return split


def _stack_inputs(batch: list[_Pending]) -> dict[str, Array]:
    first = batch[0].request.inputs
    if len(batch) == 1:
        return first
    return {name: np.concatenate([p.request.inputs[name] for p in batch]) for name in first}


def _select(request: InferRequest, outputs: dict[str, Array]) -> dict[str, Array]:
    if request.outputs is None:
        return outputs
    return {o.name: outputs[o.name] for o in request.outputs}


def _fail(batch: list[_Pending], error: InferdError) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)
