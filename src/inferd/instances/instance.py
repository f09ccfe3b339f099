"""A model instance: one backend instance plus the one thread that runs its batches."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from inferd.backends.base import BackendInstance, BatchOutputs, BatchRequest, Device
from inferd.core.errors import Cancelled, InferdError, ModelExecutionError
from inferd.core.running_loop import running_loop
from inferd.core.types import Array

# A batch runs on the event loop only where its instance's batches took this long or less
# on average (`RunsOnLoop.short`): how long one request may hold the loop, while every other
# connection waits. A few times the example MLP's batch-1 run (about 0.1 ms on one core).
LOOP_LIMIT_NS = 500_000
# Batches an instance measures before it may run one on the loop, and the weight of the
# newest in its typical execution time (an exponential moving average).
LOOP_WARMUP_BATCHES = 8
_EMA_WEIGHT = 8


@dataclass(slots=True)
class ExecutionResult:
    """`ready_ns`: when the instance was free for the batch, where it waited on the instance
    behind the batch before it (`Stages`): that batch's end; else 0."""

    outputs: BatchOutputs
    compute_start_ns: int
    compute_end_ns: int
    ready_ns: int = 0


# How a batch handed to an instance ended: its result, or what it raised.
Outcome = ExecutionResult | BaseException
C = TypeVar("C")
Done = Callable[[C, Outcome], None]  # called on the event loop with its context and the outcome


class Instance(Protocol):
    """What a scheduler runs batches on: an in-process `ModelInstance`, or one elsewhere (the
    cluster's remote instances).

    `pipeline_depth`: how many batches a scheduler may hand it at once. One for an in-process
    instance, which is busy until its batch returns; more where a batch spends time in transit
    that the next one can overlap.
    """

    name: str
    device: Device
    pipeline_depth: int

    async def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        started: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        """Run the batch; `started`, where given, is called on the event loop once the batch
        starts to run (not at all for one that never starts): work it sets off on the loop
        then overlaps the batch's computation."""

    def close(self) -> None: ...


@runtime_checkable
class RunsHere(Instance, Protocol):
    """An instance whose batch may also run on the thread of a caller that waits for it anyway
    (a model's call to another model, from the caller model's own thread): one thread hop to
    the instance and one back fewer. Its scheduler lends it to that caller alone."""

    def execute_here(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> ExecutionResult: ...


@runtime_checkable
class Stages(Instance, Protocol):
    """An instance that runs the batches handed to it one after another on its own thread, so
    that a scheduler may hand it the next batch while one runs: that batch waits there and
    starts as the one before ends, without a round trip through the event loop. A batch that
    waited so is not run when every request of it was cancelled meanwhile (it fails with
    `Cancelled`)."""

    def waiting(self) -> int:
        """Batches handed over that have not started yet."""

    def hand(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        done: Done[C],
        context: C,
    ) -> None:
        """`execute` without awaiting it: `done(context, outcome)` is called on the event loop
        (one loop callback) once the batch ended, or was not run (`Cancelled`)."""


@runtime_checkable
class RunsOnLoop(Stages, RunsHere, Protocol):
    """An instance that may run a batch on the event loop's own thread (`execute_here` called
    there), where its backend declares that safe and its batches are known to be short: a
    scheduler with nothing else in flight may so save the two thread hand-offs of a request."""

    def short(self) -> bool:
        """Whether a batch may run on the event loop now: the backend declares it safe there
        (`runs_on_loop`), and its batches measured so far took `LOOP_LIMIT_NS` or less."""


class ModelInstance:
    """Runs batches for one instance of a model in its own thread, off the event loop.

    A backend that releases the GIL (ONNX Runtime, PyTorch) runs N instances truly in
    parallel; each instance executes one batch at a time, so a scheduler that awaits
    `execute` knows the instance is free again when it returns.
    """

    pipeline_depth = 1

    def __init__(self, name: str, device: Device, backend_instance: BackendInstance) -> None:
        self.name = name
        self.device = device
        self._backend_instance = backend_instance
        # Its backend's word that `execute` may run on the event loop's thread: it never waits
        # for the loop and holds no state bound to a thread (ONNX Runtime on CPU).
        self._runs_on_loop = bool(getattr(backend_instance, "runs_on_loop", False))
        self._typical_ns = 0  # of its batches that ended without an error
        self._measured = 0
        # A bare thread and queue rather than a ThreadPoolExecutor: one hop each way per batch,
        # with no concurrent.futures.Future to chain onto the asyncio one.
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        started: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        loop = running_loop()
        future: asyncio.Future[ExecutionResult] = loop.create_future()
        self._jobs.put(_Job(loop, _settle, future, inputs, output_names, requests, started))
        return await future

    def hand(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        done: Done[C],
        context: C,
    ) -> None:
        loop = running_loop()
        self._jobs.put(_Job(loop, done, context, inputs, output_names, requests))

    def execute_here(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> ExecutionResult:
        """`execute` on the calling thread, for a caller its scheduler lent the instance to
        (so no batch runs on its own thread meanwhile); the instance's thread runs its batches
        with it too."""
        result = run_batch(self._backend_instance, self.name, inputs, output_names, requests)
        # One thread runs the instance's batches at a time (its own, or a borrower's), so
        # these updates never race.
        took = result.compute_end_ns - result.compute_start_ns
        if self._measured:
            self._typical_ns += (took - self._typical_ns) // _EMA_WEIGHT
        else:
            self._typical_ns = took
        self._measured += 1
        return result

    def waiting(self) -> int:
        return self._jobs.qsize()

    def short(self) -> bool:
        return (
            self._runs_on_loop
            and self._measured >= LOOP_WARMUP_BATCHES
            and self._typical_ns <= LOOP_LIMIT_NS
        )

    def _serve(self) -> None:
        jobs = self._jobs
        ready = 0  # the end of the batch before, while the next one waited behind it
        while True:
            if jobs.empty():
                ready = 0
            if (job := jobs.get()) is None:
                return
            if ready and job.requests and all(request.cancelled for request in job.requests):
                error = Cancelled("the request was cancelled before it started")
                job.loop.call_soon_threadsafe(job.done, job.context, error)
                continue
            if job.started is not None:
                # Told from this thread as the batch starts, not by the loop as it hands the
                # batch over: this thread holds the GIL here and keeps it until the model
                # first releases it (in numpy, say), so what `started` sets off on the loop
                # overlaps the model's computation. Set off at the hand-over, it would run
                # first: this thread, woken meanwhile, waits for the GIL until the loop idles,
                # as the loop takes it back after each system call before a waiter wakes.
                job.loop.call_soon_threadsafe(job.started)
            try:
                result = self.execute_here(job.inputs, job.output_names, job.requests)
            except BaseException as exc:  # delivered to the loop, which reports it
                ready = time.monotonic_ns()
                job.loop.call_soon_threadsafe(job.done, job.context, exc)
            else:
                result.ready_ns, ready = ready, result.compute_end_ns
                job.loop.call_soon_threadsafe(job.done, job.context, result)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()
        self._backend_instance.close()


def run_batch(
    backend_instance: BackendInstance,
    name: str,
    inputs: Mapping[str, Array],
    output_names: Sequence[str],
    requests: Sequence[BatchRequest],
) -> ExecutionResult:
    """One batch on a backend instance named `name`, timed; what the model raised becomes a
    `ModelExecutionError` that names the instance."""
    start = time.monotonic_ns()
    try:
        outputs = backend_instance.execute(inputs, output_names, requests)
    except InferdError:
        raise
    except Exception as exc:
        raise ModelExecutionError(f"instance {name} failed: {exc}") from exc
    return ExecutionResult(outputs, start, time.monotonic_ns())


@dataclass(slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    done: Done[Any]
    context: Any
    inputs: Mapping[str, Array]
    output_names: Sequence[str]
    requests: Sequence[BatchRequest]
    started: Callable[[], None] | None = None


def _settle(future: asyncio.Future[ExecutionResult], outcome: Outcome) -> None:
    if future.done():  # the awaiting request may have been cancelled meanwhile
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
