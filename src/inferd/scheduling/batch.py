"""Executing a formed batch: the part the dynamic and the sequence batcher share.

A batcher forms a batch as rows, each a caller's request with the future it awaits (`Pending`)
or a padding row (None), and hands it to `BatchRunner.run` with an instance. The runner asks
the batcher's `BatchKind` for what differs (the stacked inputs, the outputs to compute, how
stacked outputs split per request, what one request gets), executes the batch, and returns
the delivery: it stamps the compute times, reports the batch, and answers each caller. The
batcher calls the delivery when it likes (`preserve_ordering` holds it back until the earlier
batches delivered).

When the model refuses the batch's input (`InvalidArgument`), its requests run again one by
one, so only the request at fault fails. A backend may also answer each request on its own,
an error for some of them; only those fail.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.core.errors import InferdError, InstanceLost, Internal, InvalidArgument
from inferd.core.running_loop import running_loop
from inferd.core.types import Array, InferRequest, Timestamps
from inferd.instances.instance import ExecutionResult, Instance, Outcome, RunsHere, Stages
from inferd.scheduling.adaptive import SloController

# rows of its requests, compute marks of the batch, the instance's name, its requests
# (with their futures), padding rows
BatchCallback = Callable[[int, Timestamps, str, Sequence["Pending"], int], None]
Answer = dict[str, Array] | InferdError  # what one request of a batch gets back
Deliver = Callable[[], None]

logger = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Pending:
    """A request waiting for its answer: the future its caller awaits, and its rows."""

    request: InferRequest
    future: asyncio.Future[dict[str, Array]]
    enqueued_ns: int
    rows: int
    # The model handed the request back for another step (an iterative sequence): its answer
    # is whatever that step returned, not its last.
    rescheduled: bool = field(default=False, init=False)

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)


P = TypeVar("P", bound=Pending)


class Batch(Generic[P]):
    """A formed batch: its rows in order (None: a padding row) and each request's share."""

    __slots__ = ("calls", "filled", "requests", "rows", "size")

    def __init__(self, rows: list[P | None]) -> None:
        self.rows = rows
        self.calls: list[P] = []  # the rows that carry a request
        self.requests: list[BatchRequest] = []  # their row ranges, as the backend sees them
        start = filled = 0
        for row in rows:
            if row is None:
                start += 1
                continue
            end = start + row.rows
            self.calls.append(row)
            request = row.request
            self.requests.append(
                BatchRequest(start, end, request.id, request.parameters, request.responses, request)
            )
            filled += row.rows
            start = end
        self.size = start  # rows along the batch axis, padding included
        self.filled = filled  # rows that carry a request

    def again(self) -> Batch[P]:
        """The batch, to run again (the same rows, each request's share kept): the marks the
        backend set in its last run (`rescheduled`) are cleared."""
        for request in self.requests:
            request.rescheduled = False
        return self


class BatchKind(Protocol[P]):
    """What differs between batchers in executing a batch."""

    def inputs(self, batch: Batch[P]) -> Mapping[str, Array]:
        """The inputs the instance executes."""

    def output_names(self, batch: Batch[P]) -> list[str]:
        """The outputs the instance computes."""

    def split(self, batch: Batch[P], outputs: dict[str, Array]) -> list[dict[str, Array]]:
        """Stacked outputs as each request's, in the order of `batch.calls`."""

    def one_by_one(self, batch: Batch[P]) -> list[list[P | None]]:
        """Each request of `batch` as rows of its own."""

    def finish(self, call: P, outputs: dict[str, Array]) -> dict[str, Array]:
        """What the caller gets from its outputs; raises `InferdError` to fail only it."""


class BatchRunner(Generic[P]):
    """Executes formed batches on instances and answers their callers."""

    def __init__(
        self, kind: BatchKind[P], on_batch: BatchCallback | None, slo: SloController | None = None
    ) -> None:
        self._kind = kind
        self._on_batch = on_batch
        self._slo = slo

    async def run(
        self, instance: Instance, rows: list[P | None], started: Callable[[], None] | None = None
    ) -> Deliver:
        """Execute the batch of `rows` (at least one real); returns what answers its callers.
        `started`: as in `Instance.execute` (called for each batch, where the model refuses
        the batch's input and its requests run one by one)."""
        return await self.run_batch(instance, Batch(rows), started)

    async def run_batch(
        self, instance: Instance, batch: Batch[P], started: Callable[[], None] | None = None
    ) -> Deliver:
        """`run` of a formed batch (one kept from a batch before: see `Batch.again`)."""
        kind = self._kind
        compute = Timestamps(compute_start=time.monotonic_ns())
        try:
            result = await instance.execute(
                kind.inputs(batch), kind.output_names(batch), batch.requests, started
            )
        except InstanceLost:
            raise  # its scheduler ends what the instance held
        except InvalidArgument as exc:
            if len(batch.calls) == 1:
                return functools.partial(fail_all, batch.calls, exc)
            # The model refused one request's input: run them one by one, so only it fails.
            deliveries = [
                await self.run(instance, alone, started) for alone in kind.one_by_one(batch)
            ]
            return functools.partial(_call_all, deliveries)
        except Exception as exc:
            return functools.partial(fail_all, batch.calls, batch_failure(exc))
        return self._delivery(batch, compute, result, instance.name)

    def hand(self, instance: Stages, call: P, then: Callable[[Deliver], None]) -> None:
        """Hand one request's batch to `instance` without awaiting it: once it ended, `then`
        gets what answers its caller, in the instance's one callback on the event loop."""
        kind = self._kind
        batch = Batch([call])
        context = _Handed(batch, Timestamps(compute_start=time.monotonic_ns()), instance, then)
        try:
            inputs = kind.inputs(batch)
        except Exception as exc:  # answered from the loop, as a failed execution is
            running_loop().call_soon(self._handed_back, context, exc)
            return
        instance.hand(inputs, kind.output_names(batch), batch.requests, self._handed_back, context)

    def _handed_back(self, handed: _Handed[P], outcome: Outcome) -> None:
        batch = handed.batch
        if isinstance(outcome, ExecutionResult):
            deliver = self._delivery(batch, handed.compute, outcome, handed.instance.name)
        else:
            error = outcome if isinstance(outcome, Exception) else Internal(repr(outcome))
            deliver = functools.partial(fail_all, batch.calls, batch_failure(error))
        handed.then(deliver)

    def _delivery(
        self, batch: Batch[P], compute: Timestamps, result: ExecutionResult, instance: str
    ) -> Deliver:
        """What answers the callers of a batch that ran: its outputs split, or its failure."""
        if result.ready_ns > compute.compute_start:  # it waited behind the batch before
            compute.compute_start = result.ready_ns
        try:
            answers = self._answers(batch, result.outputs)
        except Exception as exc:
            return functools.partial(fail_all, batch.calls, batch_failure(exc))
        padding = batch.size - batch.filled
        return functools.partial(
            self._deliver, batch.calls, batch.filled, padding, answers, compute, result, instance
        )

    def run_here(self, instance: RunsHere, rows: list[P | None]) -> tuple[list[Answer], Deliver]:
        """Execute the batch of `rows` (at least one real) on the calling thread: a caller's
        that was lent `instance` and waits for it, or the event loop's where `instance` may run
        there (`RunsOnLoop`). Each request's answer, in the order of its rows, and what reports
        the batch and answers their futures, to be called on the event loop. As in `run`, a
        batch whose input the model refuses runs again one request at a time."""
        kind = self._kind
        batch = Batch(rows)
        compute = Timestamps(compute_start=time.monotonic_ns())
        try:
            result = instance.execute_here(
                kind.inputs(batch), kind.output_names(batch), batch.requests
            )
        except InvalidArgument as exc:
            if len(batch.calls) > 1:
                return self._one_by_one_here(instance, batch)
            return self._failed_here(batch.calls, exc)
        except Exception as exc:
            return self._failed_here(batch.calls, exc)
        try:
            answers = self._answers(batch, result.outputs)
        except Exception as exc:
            return self._failed_here(batch.calls, exc)
        # Its callers have the answers now, before the loop delivers them.
        compute.compute_end = time.monotonic_ns()
        padding = batch.size - batch.filled
        name = instance.name
        deliver = functools.partial(
            self._deliver, batch.calls, batch.filled, padding, answers, compute, result, name
        )
        return answers, deliver

    def _one_by_one_here(self, instance: RunsHere, batch: Batch[P]) -> tuple[list[Answer], Deliver]:
        ran = [self.run_here(instance, alone) for alone in self._kind.one_by_one(batch)]
        answers = [answer for answered, _ in ran for answer in answered]
        return answers, functools.partial(_call_all, [deliver for _, deliver in ran])

    @staticmethod
    def _failed_here(calls: list[P], exc: Exception) -> tuple[list[Answer], Deliver]:
        error = batch_failure(exc)
        return [error] * len(calls), functools.partial(fail_all, calls, error)

    def _answers(self, batch: Batch[P], outputs: BatchOutputs) -> list[Answer]:
        calls = batch.calls
        if isinstance(outputs, list):
            if len(outputs) != len(calls):
                raise Internal(f"the backend answered {len(outputs)} of {len(calls)} requests")
            split: Sequence[Answer] = outputs
        else:
            split = self._kind.split(batch, outputs)
        return [
            self._answer(call, part, answer)
            for call, part, answer in zip(calls, batch.requests, split, strict=True)
        ]

    def _answer(self, call: P, part: BatchRequest, answer: Answer) -> Answer:
        """What `call` gets from its share `answer` of the batch's outputs."""
        call.rescheduled = part.rescheduled
        if isinstance(answer, InferdError):
            return answer
        try:
            return self._kind.finish(call, answer)
        except InferdError as exc:
            return exc

    def _deliver(
        self,
        calls: list[P],
        filled: int,
        padding: int,
        answers: list[Answer],
        compute: Timestamps,
        result: ExecutionResult,
        instance: str,
    ) -> None:
        """Report the batch of `calls` (`filled` rows carry them, `padding` rows do not) and
        answer them."""
        compute.compute_input_end = result.compute_start_ns
        compute.compute_output_start = result.compute_end_ns
        end = compute.compute_end = compute.compute_end or time.monotonic_ns()
        if self._on_batch is not None:
            self._on_batch(filled, compute, instance, calls, padding)
        for call, answer in zip(calls, answers, strict=True):
            call.request.timestamps.copy_compute(compute)
            if isinstance(answer, InferdError):
                call.fail(answer)
            elif not call.future.done():
                call.future.set_result(answer)
        if self._slo is not None:
            latencies = [end - (c.request.timestamps.received or c.enqueued_ns) for c in calls]
            execution = result.compute_end_ns - result.compute_start_ns
            self._slo.record(latencies, filled, execution, end)


@dataclass(slots=True, eq=False)
class _Handed(Generic[P]):
    """A batch handed to an instance (`BatchRunner.hand`), until its outcome is back."""

    batch: Batch[P]
    compute: Timestamps
    instance: Stages
    then: Callable[[Deliver], None]


class Wakeup:
    """A worker's sleep until `wake` or a deadline: one future and at most one timer."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    @property
    def sleeping(self) -> bool:
        return self._waiter is not None

    def wake(self) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def sleep(self, deadline_ns: int | None) -> None:
        """Until `wake` is called, or until `deadline_ns` (None: no deadline)."""
        loop = running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = None
        if deadline_ns is not None:
            delay = max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9)
            timer = loop.call_later(delay, self.wake)
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None
            if timer is not None:
                timer.cancel()


def stack_inputs(rows: Sequence[dict[str, Array] | None]) -> dict[str, Array]:
    """Each input concatenated over the rows' inputs (at least one real); a None row is
    padding: zeros, or empty elements for BYTES, shaped like the first real row's."""
    first = next(inputs for inputs in rows if inputs is not None)
    if len(rows) == 1:
        return first
    padded = any(inputs is None for inputs in rows)
    padding = {name: blank(array) for name, array in first.items()} if padded else {}
    return {
        name: np.concatenate([padding[name] if inputs is None else inputs[name] for inputs in rows])
        for name in first
    }


def blank(array: Array) -> Array:
    """Zeros shaped and typed like `array` (empty elements for BYTES)."""
    if array.dtype.kind == "O":
        return np.full_like(array, b"")
    return np.zeros_like(array)


def split_rows(batch: Batch[P], outputs: dict[str, Array]) -> list[dict[str, Array]]:
    """Each request's rows of stacked outputs; raises `Internal` for a wrong batch axis."""
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != batch.size:
            raise Internal(f"output '{name}' has {array.shape} for a batch of {batch.size} rows")
    return [
        {name: array[part.start : part.end] for name, array in outputs.items()}
        for part in batch.requests
    ]


def wanted_outputs(calls: Sequence[Pending], names: list[str]) -> list[str]:
    """The outputs, in the model's order, that any request asked for (all when one named none)."""
    wanted: set[str] = set()
    for call in calls:
        requested = call.request.outputs
        if requested is None:
            return names
        for output in requested:
            wanted.add(output.name)
    return [name for name in names if name in wanted]


def select_outputs(request: InferRequest, outputs: dict[str, Array]) -> dict[str, Array]:
    """The outputs the request asked for (all of them when it named none)."""
    if request.outputs is None:
        return outputs
    return {o.name: outputs[o.name] for o in request.outputs}


def batch_failure(exc: Exception) -> InferdError:
    """The error every request of a failed batch gets: an `InferdError` as it is; anything else
    is a fault of ours, not the client's, so `Internal` (and the server keeps serving)."""
    return exc if isinstance(exc, InferdError) else Internal(f"batch failed: {exc}")


def fail_all(calls: Sequence[Pending], error: Exception) -> None:
    for call in calls:
        call.fail(error)


def fail_undelivered(instance: str, calls: Sequence[Pending], exc: Exception) -> None:
    """Delivering a batch raised (e.g. a failing observer): fail its requests still waiting,
    so the worker survives it."""
    logger.exception("delivering a batch of '%s' failed", instance)
    fail_all(calls, Internal(f"delivering the batch failed: {exc}"))


def _call_all(calls: list[Deliver]) -> None:
    for call in calls:
        call()
