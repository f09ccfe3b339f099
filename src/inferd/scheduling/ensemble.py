"""The ensemble scheduler: one request's tensors flow through a DAG of composing models.

A step starts as soon as every tensor it reads exists, so independent branches run at the
same time. Each step is one request to its composing model through `StepCall`, which the
engine provides: the composing model's own validation and scheduler run it, so its dynamic
batcher batches steps of concurrent ensemble requests together. A tensor is dropped as soon
as no remaining step reads it and it is not returned.

With `max_inflight_requests: N` (Triton's back-pressure), each step has at most N requests
in flight across all of the ensemble's requests; a step request beyond that waits before it
is issued, so a fast step feeding a slow one does not pile requests up in the slow one's
queue. 0 (the default) leaves steps unbounded, at no cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from inferd.core.errors import InferdError, Internal, Unavailable
from inferd.core.types import (
    UNTRACED_PARENT,
    Array,
    InferRequest,
    Parameters,
    RequestedOutput,
    Timestamps,
)
from inferd.scheduling.ensemble_graph import LATEST, EnsembleGraph, Plan, Step

# Runs one step request through its composing model and returns the outputs it asked for.
StepCall = Callable[[InferRequest], Coroutine[Any, Any, dict[str, Array]]]


class EnsembleScheduler:
    def __init__(self, graph: EnsembleGraph, call: StepCall, max_inflight: int = 0) -> None:
        self._graph = graph
        self._call = call
        # One bound per step (by its index in the graph), shared by every request.
        self._bounds = (
            [asyncio.Semaphore(max_inflight) for _ in graph.steps] if max_inflight else None
        )
        self._plans: dict[tuple[str, ...], Plan] = {}  # by requested outputs; few per ensemble
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False

    @property
    def graph(self) -> EnsembleGraph:
        return self._graph

    def start(self) -> None:
        """Nothing to start: steps queue in the composing models' schedulers."""

    def pending(self) -> int:
        # An ensemble request waits in its composing models' queues, and is counted there.
        return 0

    async def stop(self) -> None:
        self._stopping = True
        await self._idle.wait()

    async def submit(self, request: InferRequest) -> dict[str, Array]:
        if self._stopping:
            raise Unavailable(f"model '{request.model_name}' is being unloaded")
        self._in_flight += 1
        self._idle.clear()
        try:
            return await self._run(request)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def _plan(self, wanted: tuple[str, ...]) -> Plan:
        plan = self._plans.get(wanted)
        if plan is None:
            plan = self._plans[wanted] = self._graph.plan(wanted)
        return plan

    async def _run(self, request: InferRequest) -> dict[str, Array]:
        graph = self._graph
        wanted = tuple(o.name for o in request.outputs) if request.outputs else graph.outputs
        flow = _Flow(graph, self._plan(wanted), request, self._call, self._bounds)
        try:
            await flow.run()
        finally:
            flow.cancel()  # after a failure, the other steps' results are not needed
        return {name: flow.tensors[name] for name in wanted}


class _Flow:
    """One request on its way through the graph."""

    def __init__(
        self,
        graph: EnsembleGraph,
        plan: Plan,
        request: InferRequest,
        call: StepCall,
        bounds: list[asyncio.Semaphore] | None,
    ) -> None:
        self._graph = graph
        self._plan = plan
        self._request = request
        self._call = call
        self._bounds = bounds
        self.tensors: dict[str, Array] = dict(request.inputs)
        self._uses = dict(plan.uses)
        self._waiting = dict(plan.waiting)
        self._running: dict[asyncio.Task[dict[str, Array]], Step] = {}

    async def run(self) -> None:
        for index in self._plan.steps:
            if not self._waiting[index]:
                self._launch(index)
        while self._running:
            done, _ = await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                step = self._running.pop(task)
                self._store(step, _step_result(task, step, self._graph.name))

    def cancel(self) -> None:
        for task in self._running:
            task.cancel()

    def _launch(self, index: int) -> None:
        step = self._graph.steps[index]
        request = _step_request(self._request, step, self.tensors)
        call = self._call(request) if self._bounds is None else self._bounded(index, request)
        self._running[asyncio.create_task(call)] = step
        # Once handed to the step, an input no later step reads (nor the answer) is dropped.
        # A step reading one tensor into two inputs counts as one read, as in the plan.
        for tensor in set(step.input_map.values()):
            self._uses[tensor] -= 1
            if not self._uses[tensor]:
                self.tensors.pop(tensor, None)

    def _store(self, step: Step, outputs: dict[str, Array]) -> None:
        for model_output, tensor in step.output_map.items():
            if not self._uses.get(tensor):
                continue  # produced, but nothing this request needs reads it
            self.tensors[tensor] = outputs[model_output]
            for reader in self._plan.readers.get(tensor, ()):
                self._waiting[reader] -= 1
                if not self._waiting[reader]:
                    self._launch(reader)

    async def _bounded(self, index: int, request: InferRequest) -> dict[str, Array]:
        assert self._bounds is not None  # only called when the ensemble bounds its steps
        async with self._bounds[index]:
            return await self._call(request)


def response_parameters(request: InferRequest) -> Parameters:
    """What an ensemble's response carries back, as Triton's does: the request's sequence id
    and flags (each step runs with them, and the response reports them whether set or not)."""
    parameters = request.parameters
    return {
        "sequence_id": parameters.get("sequence_id", 0),
        "sequence_start": bool(parameters.get("sequence_start", False)),
        "sequence_end": bool(parameters.get("sequence_end", False)),
    }


def _step_request(request: InferRequest, step: Step, tensors: dict[str, Array]) -> InferRequest:
    inputs = {m: tensors[t] for m, t in step.input_map.items() if t in tensors}
    return InferRequest(
        model_name=step.model_name,
        inputs=inputs,
        model_version="" if step.model_version == LATEST else str(step.model_version),
        id=request.id,
        outputs=[RequestedOutput(name) for name in step.output_map],
        # Sequence flags, priority and timeout apply to every step, as in Triton.
        parameters=dict(request.parameters),
        # A traced request's steps are spans under its own.
        trace_parent=None if request.span is None else request.span.context("ensemble step"),
        # And in trace files, children of its trace (traced only when it is).
        timestamps=Timestamps(parent_id=request.timestamps.trace_id or UNTRACED_PARENT),
    )


def _step_result(
    task: asyncio.Task[dict[str, Array]], step: Step, ensemble: str
) -> dict[str, Array]:
    """The step's outputs, or its error re-raised with the step named and its code kept."""
    exc: BaseException | None = task.exception()
    if exc is None:
        return task.result()
    where = f"ensemble '{ensemble}' {step.describe()} failed"
    if isinstance(exc, InferdError):
        # Same class (so the same status: a 400 stays a 400), whatever its constructor takes.
        error = type(exc).__new__(type(exc))
        error.__dict__.update(exc.__dict__)
        InferdError.__init__(error, f"{where}: {exc.message}")
        raise error from exc
    raise Internal(f"{where}: {exc!r}") from exc
