"""The ensemble scheduler with step calls answered in-process: order, concurrency, outputs,
release of intermediate tensors, failures and parameters."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.types import Array, InferRequest, RequestedOutput
from inferd.scheduling.ensemble import EnsembleScheduler, response_parameters
from inferd.scheduling.ensemble_graph import Step, build_graph

Handler = Callable[[InferRequest], Awaitable[dict[str, Array]]]


def diamond(version: int = -1) -> list[Step]:
    """IN -> pre -> X -> {a, b} -> post -> OUT; `extra` reads X and writes EXTRA."""
    return [
        Step(0, "pre", version, {"i": "IN"}, {"o": "X"}),
        Step(1, "a", -1, {"i": "X"}, {"o": "A"}),
        Step(2, "b", -1, {"i": "X"}, {"o": "B"}),
        Step(3, "post", -1, {"x": "A", "y": "B"}, {"o": "OUT"}),
        Step(4, "extra", -1, {"i": "X"}, {"o": "EXTRA"}),
    ]


async def arithmetic(request: InferRequest) -> dict[str, Array]:
    """What each model computes: pre +1, a *2, b *3, post x+y, extra -1."""
    inputs = request.inputs
    match request.model_name:
        case "pre":
            return {"o": inputs["i"] + 1}
        case "a":
            return {"o": inputs["i"] * 2}
        case "b":
            return {"o": inputs["i"] * 3}
        case "post":
            return {"o": inputs["x"] + inputs["y"]}
        case _:
            return {"o": inputs["i"] - 1}


def scheduler(handler: Handler, steps: list[Step] | None = None) -> EnsembleScheduler:
    graph = build_graph("ens", steps or diamond(), ["IN"], ["OUT", "EXTRA"])

    async def call(request: InferRequest) -> dict[str, Array]:
        return await handler(request)

    return EnsembleScheduler(graph, call)


def ensemble_request(*outputs: str, **parameters: Any) -> InferRequest:
    return InferRequest(
        "ens",
        {"IN": np.arange(4, dtype=np.float32)},
        id="r1",
        outputs=[RequestedOutput(n) for n in outputs] or None,
        parameters=parameters,
    )


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


def test_outputs_match_the_steps_run_by_hand() -> None:
    async def test() -> None:
        outputs = await scheduler(arithmetic).submit(ensemble_request())
        x = np.arange(4, dtype=np.float32) + 1
        assert list(outputs) == ["OUT", "EXTRA"]
        np.testing.assert_array_equal(outputs["OUT"], x * 2 + x * 3)
        np.testing.assert_array_equal(outputs["EXTRA"], x - 1)

    run(test)


def test_only_requested_outputs_come_back_and_only_their_steps_run() -> None:
    async def test() -> None:
        called: list[str] = []

        async def handler(request: InferRequest) -> dict[str, Array]:
            called.append(request.model_name)
            return await arithmetic(request)

        outputs = await scheduler(handler).submit(ensemble_request("EXTRA"))
        assert list(outputs) == ["EXTRA"]
        assert sorted(called) == ["extra", "pre"]

    run(test)


def test_independent_branches_run_at_the_same_time_and_the_join_waits_for_both() -> None:
    async def test() -> None:
        started: dict[str, asyncio.Event] = {n: asyncio.Event() for n in ("a", "b")}
        finished: list[str] = []

        async def handler(request: InferRequest) -> dict[str, Array]:
            name = request.model_name
            if name in started:
                started[name].set()
                # Each branch finishes only once the other has started: run one after the
                # other, they would wait forever (and the test times out).
                other = "b" if name == "a" else "a"
                await started[other].wait()
            if name == "post":
                assert {"a", "b"} <= set(finished)
            finished.append(name)
            return await arithmetic(request)

        await scheduler(handler).submit(ensemble_request("OUT"))
        assert finished[0] == "pre" and finished[-1] == "post"

    run(test)


def test_an_intermediate_tensor_is_released_once_no_step_needs_it() -> None:
    async def test() -> None:
        refs: dict[str, weakref.ref[Array]] = {}

        async def handler(request: InferRequest) -> dict[str, Array]:
            outputs = await arithmetic(request)
            if request.model_name == "pre":
                refs["X"] = weakref.ref(outputs["o"])
            if request.model_name == "post":
                gc.collect()
                assert refs["X"]() is None, "X is still held after both its readers ran"
            return outputs

        await scheduler(handler).submit(ensemble_request("OUT"))

    run(test)


def test_a_tensor_one_step_reads_into_two_inputs_counts_as_one_read() -> None:
    """Triton's add_sub ensemble: IN feeds both inputs of one step and is read again later."""
    steps = [
        Step(0, "post", -1, {"x": "IN", "y": "IN"}, {"o": "DOUBLE"}),
        Step(1, "post", -1, {"x": "DOUBLE", "y": "IN"}, {"o": "TRIPLE"}),
        Step(2, "post", -1, {"x": "TRIPLE", "y": "IN"}, {"o": "OUT"}),
    ]

    async def test() -> None:
        graph = build_graph("ens", steps, ["IN"], ["OUT"])
        outputs = await EnsembleScheduler(graph, arithmetic).submit(ensemble_request())
        np.testing.assert_array_equal(outputs["OUT"], np.arange(4, dtype=np.float32) * 4)

    run(test)


def test_a_failing_step_fails_the_request_with_its_name_and_code_and_cancels_siblings() -> None:
    async def test() -> None:
        cancelled = asyncio.Event()

        async def handler(request: InferRequest) -> dict[str, Array]:
            if request.model_name == "a":
                try:
                    await asyncio.Event().wait()  # never answers by itself
                except asyncio.CancelledError:
                    cancelled.set()
                    raise
            if request.model_name == "b":
                raise InvalidArgument("input 'i' is bad")
            return await arithmetic(request)

        ensemble = scheduler(handler)
        with pytest.raises(InvalidArgument) as info:
            await ensemble.submit(ensemble_request("OUT"))
        assert info.value.message == "ensemble 'ens' step 2 (model 'b') failed: input 'i' is bad"
        await cancelled.wait()
        # The scheduler still serves other requests.
        assert "EXTRA" in await ensemble.submit(ensemble_request("EXTRA"))

    run(test)


def test_a_step_raising_something_unexpected_is_internal() -> None:
    async def test() -> None:
        async def handler(request: InferRequest) -> dict[str, Array]:
            raise RuntimeError("boom")

        with pytest.raises(Exception) as info:
            await scheduler(handler).submit(ensemble_request("OUT"))
        assert type(info.value).__name__ == "Internal"
        assert "step 0 (model 'pre') failed: RuntimeError('boom')" in str(info.value)

    run(test)


def test_parameters_id_and_version_pass_to_every_step() -> None:
    async def test() -> None:
        seen: list[InferRequest] = []

        async def handler(request: InferRequest) -> dict[str, Array]:
            seen.append(request)
            return await arithmetic(request)

        parameters = {"sequence_id": 7, "sequence_start": True, "priority": 2, "timeout": 100}
        await scheduler(handler, diamond(version=3)).submit(ensemble_request("OUT", **parameters))
        assert {r.model_name for r in seen} == {"pre", "a", "b", "post"}
        for request in seen:
            assert request.parameters == parameters and request.id == "r1"
            assert [o.name for o in request.outputs or ()] == ["o"]
        assert {r.model_name: r.model_version for r in seen}["pre"] == "3"
        assert {r.model_name: r.model_version for r in seen}["a"] == ""

    run(test)


def test_the_response_carries_the_sequence_id_and_flags_back() -> None:
    sent = ensemble_request("OUT", sequence_id="s-1", sequence_start=True, priority=2)
    assert response_parameters(sent) == {
        "sequence_id": "s-1",
        "sequence_start": True,
        "sequence_end": False,
    }
    # As in Triton, a request outside any sequence reports id 0 and both flags off.
    assert response_parameters(ensemble_request("OUT")) == {
        "sequence_id": 0,
        "sequence_start": False,
        "sequence_end": False,
    }


def test_stop_finishes_accepted_requests_then_refuses_new_ones() -> None:
    async def test() -> None:
        release = asyncio.Event()

        async def handler(request: InferRequest) -> dict[str, Array]:
            await release.wait()
            return await arithmetic(request)

        ensemble = scheduler(handler)
        accepted = asyncio.create_task(ensemble.submit(ensemble_request("EXTRA")))
        await asyncio.sleep(0)
        stopping = asyncio.create_task(ensemble.stop())
        await asyncio.sleep(0)
        assert not stopping.done()
        with pytest.raises(Unavailable):
            await ensemble.submit(ensemble_request("EXTRA"))
        release.set()
        assert "EXTRA" in await accepted
        await stopping

    run(test)


@pytest.mark.parametrize("bound", [1, 2])
def test_max_inflight_requests_bounds_each_step_and_every_request_completes(bound: int) -> None:
    async def test() -> None:
        running: dict[str, int] = {}
        most: dict[str, int] = {}

        async def handler(request: InferRequest) -> dict[str, Array]:
            name = request.model_name
            running[name] = running.get(name, 0) + 1
            most[name] = max(most.get(name, 0), running[name])
            await asyncio.sleep(0.01 if name == "post" else 0)  # the slow step
            running[name] -= 1
            return await arithmetic(request)

        graph = build_graph("ens", diamond(), ["IN"], ["OUT", "EXTRA"])
        bounded = EnsembleScheduler(graph, handler, max_inflight=bound)
        answers = await asyncio.gather(*(bounded.submit(ensemble_request()) for _ in range(8)))
        assert len(answers) == 8
        assert most == dict.fromkeys(["pre", "a", "b", "post", "extra"], bound)

    run(test)
