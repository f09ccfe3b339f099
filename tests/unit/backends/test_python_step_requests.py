"""An iterative sequence model's `Request`s kept from one step to the next (in process): the
same object and response sender for a request handed back, every field of it this step's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inferd.backends.base import BatchRequest
from inferd.backends.python.api import Batch, ModelContext, Request
from inferd.backends.python.in_process import InProcessInstance
from inferd.backends.python.sender import ResponseSender
from inferd.core.errors import InferdError
from inferd.core.types import Array, InferRequest


class Sink:
    """Where one request's responses go (a `ResponseSink`)."""

    cancelled = False

    def __init__(self) -> None:
        self.sent: list[dict[str, Array] | None] = []

    def send(
        self,
        outputs: dict[str, Array] | None = None,
        error: InferdError | None = None,
        final: bool = False,
    ) -> bool:
        self.sent.append(outputs)
        return True


class Seen:
    """A request as the model saw it when its step began."""

    def __init__(self, request: Request) -> None:
        self.request = request  # kept alive, so `is` compares objects, never reused ids
        self.sender = request.sender
        self.rescheduled = request.rescheduled
        self.rows = (request.start, request.end)
        self.x = int(request.inputs["x"].reshape(-1)[0])
        self.parameters = dict(request.parameters)
        self.id = request.id
        self.origin = request.origin


class Stepper:
    """Records each step's requests; hands back those whose `x` is odd, after scribbling on
    their parameters (which must not reach their next step)."""

    def __init__(self) -> None:
        self.steps: list[list[Seen]] = []

    def execute(self, batch: Batch) -> None:
        self.steps.append([Seen(request) for request in batch.requests])
        for request in batch.requests:
            request.parameters["scribbled"] = True
            assert request.sender is not None
            request.sender.send({"y": request.inputs["x"]})
            if int(request.inputs["x"].reshape(-1)[0]) % 2:
                request.reschedule()


def instance(model: Stepper) -> InProcessInstance:
    context = ModelContext("m", 1, Path("."), Path("1"), {}, {}, "m_0", "cpu", "cpu", 0)
    return InProcessInstance(
        lambda: model, context, {"y": "INT32"}, batched=True, decoupled=True, iterative=True
    )


def engine_request(key: str) -> InferRequest:
    return InferRequest("m", {}, parameters={"sequence_id": key, "sequence_start": True})


def step(
    model: InProcessInstance,
    rows: list[tuple[InferRequest, int, str]],
    sinks: dict[str, Sink],
) -> list[BatchRequest]:
    """One step of `rows` (engine request, x, request id), each request sending to its sink."""
    x = np.array([[value] for _, value, _ in rows], dtype=np.int32)
    requests = [
        BatchRequest(row, row + 1, request_id, dict(origin.parameters), None, origin)
        for row, (origin, _, request_id) in enumerate(rows)
    ]
    chosen: list[Any] = [sinks[origin.parameters["sequence_id"]] for origin, _, _ in rows]
    model.execute({"x": x}, ["y"], requests, chosen)
    return requests


def test_a_request_handed_back_keeps_its_request_and_sender_with_this_step_s_fields() -> None:
    model = Stepper()
    running = instance(model)
    first, second = engine_request("a"), engine_request("b")
    sinks = {"a": Sink(), "b": Sink(), "c": Sink()}
    ran = step(running, [(first, 1, "a1"), (second, 3, "b1")], sinks)
    assert [r.rescheduled for r in ran] == [True, True]

    # Only b runs on, in another row, with new inputs and parameters; c joins.
    second.parameters["sequence_start"] = False
    third = engine_request("c")
    ran = step(running, [(second, 4, "b2"), (third, 5, "c1")], sinks)
    assert [r.rescheduled for r in ran] == [False, True]

    (a1, b1), (b2, c1) = model.steps
    assert b2.request is b1.request
    assert b2.sender is b1.sender
    assert not b2.rescheduled  # handed back in the step before, not yet in this one
    assert b2.rows == (0, 1)
    assert b2.x == 4
    assert b2.parameters == {"sequence_id": "b", "sequence_start": False}
    assert b2.id == "b2"
    assert b2.origin is ran[0]  # what it reads its trace id and cancellation from
    assert c1.request is not a1.request  # a left: its request is no one else's
    assert c1.sender is not a1.sender
    assert c1.parameters == {"sequence_id": "c", "sequence_start": True}
    assert [int(out["y"][0, 0]) for out in sinks["b"].sent if out is not None] == [3, 4]


def test_only_the_last_step_s_requests_are_kept() -> None:
    model = Stepper()
    running = instance(model)
    first, second = engine_request("a"), engine_request("b")
    sinks = {"a": Sink(), "b": Sink()}
    step(running, [(first, 1, "a1")], sinks)
    step(running, [(second, 1, "b1")], sinks)  # a waits this step out (its reader is behind)
    step(running, [(first, 1, "a2")], sinks)
    (a1,), _, (a2,) = model.steps
    assert a2.request is not a1.request


def test_a_request_sent_elsewhere_gets_a_sender_of_its_new_sink() -> None:
    model = Stepper()
    running = instance(model)
    first = engine_request("a")
    step(running, [(first, 1, "a1")], {"a": Sink()})
    moved = Sink()
    step(running, [(first, 1, "a2")], {"a": moved})
    (a1,), (a2,) = model.steps
    assert a2.request is a1.request
    assert isinstance(a2.sender, ResponseSender) and a2.sender is not a1.sender
    assert len(moved.sent) == 1
