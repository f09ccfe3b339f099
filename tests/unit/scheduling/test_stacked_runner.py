"""`StackedRunner` runs a batch of one request without forming a `Batch`: each case runs the
same request on the same backend through it and through the general `BatchRunner` of
`StackedKind`, and both must hand the backend the same call, answer the same (outputs or
error) and report the same batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from inferd.backends.base import BatchOutputs, BatchRequest, Device, DeviceKind
from inferd.core.errors import InferdError, Internal, InvalidArgument, ModelExecutionError
from inferd.core.types import Array, RequestedOutput, Timestamps
from inferd.instances.instance import ModelInstance
from inferd.scheduling.batch import Answer, BatchRunner, Pending
from inferd.scheduling.queue import Queued
from inferd.scheduling.stacked import StackedKind, StackedRunner
from tests.unit.scheduling.fakes import request

OUTPUTS = ["y", "z", "w"]  # the model's order
Script = Callable[[Array, Sequence[BatchRequest]], BatchOutputs]


@dataclass
class Recorder:
    """A backend answering with `script`, that records what each execution was handed."""

    script: Script
    calls: list[tuple[dict[str, Any], list[str], list[tuple[Any, ...]]]] = field(
        default_factory=list
    )
    origins: list[Any] = field(default_factory=list)

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> BatchOutputs:
        parts = [(r.start, r.end, r.id, r.parameters, r.responses) for r in requests]
        self.calls.append(({n: a.tolist() for n, a in inputs.items()}, list(output_names), parts))
        self.origins.extend(r.origin for r in requests)
        return self.script(inputs["x"], requests)

    def close(self) -> None:
        pass


def every_output(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    return {"y": x * 2, "z": x * 3, "w": x * 4}


def rescheduling(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    for part in requests:
        part.rescheduled = True
    return {"y": x, "z": x, "w": x}


def refusing(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    raise InvalidArgument("refused input")


def crashing(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    raise ModelExecutionError("crashed")


def faulty(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    raise RuntimeError("a fault of ours")


def each_request(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    return [{"y": x[part.start : part.end]} for part in requests]


def an_error_each(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    return [InvalidArgument(f"request {part.id} refused") for part in requests]


def too_many_answers(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    return [{"y": x}, {"y": x}]


def no_answer(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    return []


def missing_output(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    return {"y": x}  # `z` was asked for


@dataclass
class Ran:
    """What one run gave: the backend's calls, the caller's answer as run and as delivered,
    and the reported batches."""

    backend: list[Any]
    answers: list[Any]
    outcome: Any
    reports: list[tuple[int, str, int, int, bool]]
    rescheduled: bool


def described(answer: Answer | BaseException) -> Any:
    if isinstance(answer, BaseException):
        return (type(answer), str(answer))
    return {name: (array.dtype.str, array.tolist()) for name, array in answer.items()}


async def run_once(
    runner_of: Callable[[Any], BatchRunner[Queued]],
    script: Script,
    rows: int,
    outputs: tuple[str, ...] | None,
) -> Ran:
    reports: list[tuple[int, str, int, int, bool]] = []

    def on_batch(
        filled: int, compute: Timestamps, instance: str, calls: Sequence[Pending], padding: int
    ) -> None:
        marks = (compute.compute_input_end, compute.compute_output_start, compute.compute_end)
        ordered = compute.compute_start <= marks[0] <= marks[1] <= marks[2]
        reports.append((filled, instance, len(calls), padding, ordered))

    backend = Recorder(script)
    instance = ModelInstance("m_0", Device(DeviceKind.CPU), backend)
    try:
        one = request(1.0, rows)
        one.id = "r1"
        if outputs is not None:
            one.outputs = [RequestedOutput(name) for name in outputs]
        future: asyncio.Future[dict[str, Array]] = asyncio.get_running_loop().create_future()
        call = Queued(one, future, 0, rows, queued=False)
        answers, deliver = runner_of(on_batch).run_here(instance, [call])
        assert not future.done()  # nothing answered before delivery
        deliver()
        outcome = await asyncio.gather(future, return_exceptions=True)
    finally:
        instance.close()
    # The request itself goes with its row range (what says whether it was cancelled).
    assert all(origin is one for origin in backend.origins)
    return Ran(
        backend.calls,
        [described(answer) for answer in answers],
        described(outcome[0]),
        reports,
        call.rescheduled,
    )


def lone(on_batch: Any) -> BatchRunner[Queued]:
    return StackedRunner(list(OUTPUTS), on_batch, None)


def general(on_batch: Any) -> BatchRunner[Queued]:
    return BatchRunner(StackedKind(list(OUTPUTS)), on_batch)


CASES = [
    (every_output, 1, None),
    (every_output, 3, None),
    (every_output, 1, ("w", "y")),  # the request's order, computed in the model's
    (every_output, 2, ("z",)),
    (rescheduling, 1, None),
    (refusing, 1, None),
    (crashing, 1, ("y",)),
    (faulty, 1, None),
    (each_request, 2, ("y",)),
    (an_error_each, 1, None),
    (too_many_answers, 1, ("y",)),
    (no_answer, 1, ("y",)),
    (missing_output, 1, ("y", "z")),
]


@pytest.mark.parametrize(("script", "rows", "outputs"), CASES)
def test_a_lone_request_runs_as_in_a_formed_batch(
    script: Script, rows: int, outputs: tuple[str, ...] | None
) -> None:
    async def both() -> tuple[Ran, Ran]:
        return (
            await run_once(lone, script, rows, outputs),
            await run_once(general, script, rows, outputs),
        )

    fast, formed = asyncio.run(both())
    assert fast.backend == formed.backend
    assert fast.answers == formed.answers
    assert fast.outcome == formed.outcome
    assert fast.reports == formed.reports
    assert fast.rescheduled == formed.rescheduled


def test_outputs_asked_for_come_back_in_the_request_order_and_are_computed_in_the_models() -> None:
    ran = asyncio.run(run_once(lone, every_output, 1, ("w", "y")))
    [(_, computed, _)] = ran.backend
    assert computed == ["y", "w"]
    assert list(ran.outcome) == ["w", "y"]
    assert ran.reports == [(1, "m_0", 1, 0, True)]


@pytest.mark.parametrize(
    ("script", "error"),
    [
        (refusing, InvalidArgument),
        (crashing, ModelExecutionError),
        (too_many_answers, Internal),
        (no_answer, Internal),
    ],
)
def test_a_failed_lone_request_fails_with_the_batch_error_and_no_report(
    script: Script, error: type[InferdError]
) -> None:
    ran = asyncio.run(run_once(lone, script, 1, ("y",)))
    assert ran.outcome[0] is error
    assert ran.reports == []


def test_several_requests_still_form_a_stacked_batch() -> None:
    async def two() -> tuple[list[Any], list[Any]]:
        backend = Recorder(every_output)
        instance = ModelInstance("m_0", Device(DeviceKind.CPU), backend)
        loop = asyncio.get_running_loop()
        calls: list[Queued | None] = [
            Queued(request(value, 1), loop.create_future(), 0, 1, queued=False)
            for value in (1.0, 5.0)
        ]
        try:
            answers, deliver = lone(None).run_here(instance, calls)
            deliver()
        finally:
            instance.close()
        return backend.calls, [described(answer) for answer in answers]

    executed, answers = asyncio.run(two())
    [(inputs, _, parts)] = executed
    assert np.array(inputs["x"])[:, 0].tolist() == [1.0, 5.0]
    assert [part[:2] for part in parts] == [(0, 1), (1, 2)]
    assert [answer["y"][1][0][0] for answer in answers] == [2.0, 10.0]
