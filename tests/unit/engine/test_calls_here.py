"""A model's call to another model waited for in its own thread (`ModelCalls.call`, what BLS
uses): when the called model does not batch and has an idle instance, the calling thread runs
it; otherwise the call takes a client's path. Either way the called model's checks, instance
count and statistics apply. A real Engine, a small backend that notes where it ran."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferd.backends.base import BatchRequest, Device
from inferd.backends.registry import BackendRegistry
from inferd.core.calls import ModelCalls
from inferd.core.errors import InvalidArgument, ModelExecutionError
from inferd.core.types import Array, InferRequest, InferResponse
from inferd.engine.api import EngineSettings
from inferd.engine.engine import Engine
from inferd.metrics.statistics import Statistics


class Runs:
    """Where the backend's executions ran, how many at once at most; `gate` holds them."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.most = 0
        self.running = 0
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.lock = threading.Lock()
        self.calls: ModelCalls | None = None


class NotingInstance:
    """y = x + 1; a negative x fails the model."""

    def __init__(self, runs: Runs) -> None:
        self._runs = runs

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        runs = self._runs
        with runs.lock:
            runs.threads.append(threading.current_thread().name)
            runs.running += 1
            runs.most = max(runs.most, runs.running)
        runs.started.set()
        try:
            runs.gate.wait(10)
            if (inputs["x"] < 0).any():
                raise RuntimeError("negative")
            return {"y": inputs["x"] + 1}
        finally:
            with runs.lock:
                runs.running -= 1

    def close(self) -> None:
        pass


class NotingModel:
    def __init__(self, runs: Runs) -> None:
        self._runs = runs

    def lend_calls(self, calls: ModelCalls) -> None:
        self._runs.calls = calls

    def create_instance(self, device: Device, name: str) -> NotingInstance:
        return NotingInstance(self._runs)

    def close(self) -> None:
        pass


class NotingBackend:
    platforms = ("noting",)
    default_model_filename = "model.noting"
    runs = Runs()

    def __init__(self, name: str = "noting") -> None:
        self.name = name

    def gpu_available(self) -> bool:
        return False

    def matches(self, version_path: Path) -> bool:
        return False

    def complete_config(self, config: Any, version_path: Path, default_max_batch_size: int) -> None:
        pass

    def load(self, config: Any, version_path: Path) -> NotingModel:
        return NotingModel(self.runs)


def _config(name: str, extra: str = "") -> str:
    return f"""
    name: "{name}"
    backend: "noting"
    max_batch_size: 4
    input [ {{ name: "x", data_type: TYPE_FP32, dims: [ 2 ] }} ]
    output [ {{ name: "y", data_type: TYPE_FP32, dims: [ 2 ] }} ]
    instance_group [ {{ count: 1, kind: KIND_CPU }} ]
    {extra}
    """


@asynccontextmanager
async def serving(root: Path, extra: str = "") -> AsyncIterator[tuple[Engine, Runs]]:
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "config.pbtxt").write_text(_config("m", extra))
    runs = NotingBackend.runs = Runs()
    statistics = Statistics()
    engine = Engine(
        EngineSettings(root),
        BackendRegistry({"noting": NotingBackend}),
        [statistics],
        statistics,
    )
    await engine.start()
    try:
        yield engine, runs
    finally:
        runs.gate.set()
        await engine.stop()


def _request(value: float, shape: tuple[int, ...] = (1, 2)) -> InferRequest:
    return InferRequest("m", {"x": np.full(shape, value, dtype=np.float32)})


async def call_from(thread: str, runs: Runs, request: InferRequest) -> InferResponse:
    """`ModelCalls.call` from a thread named `thread`, as a model's thread calls."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[InferResponse] = loop.create_future()

    def caller() -> None:
        assert runs.calls is not None
        try:
            response = runs.calls.call(request)
        except Exception as exc:
            loop.call_soon_threadsafe(answered.set_exception, exc)
        else:
            loop.call_soon_threadsafe(answered.set_result, response)

    threading.Thread(target=caller, name=thread).start()
    return await answered


def run(scenario: Any) -> None:
    asyncio.run(scenario())


def test_a_call_to_an_idle_instance_runs_on_the_calling_thread(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as (engine, runs):
            response = await call_from("caller", runs, _request(2.0))
            np.testing.assert_array_equal(response.outputs["y"], np.full((1, 2), 3.0))
            assert runs.threads == ["caller"]
            (stats,) = engine.model_statistics("m")
            assert stats.success.count == 1
            assert stats.execution_count == 1 and stats.inference_count == 1
            assert stats.compute_infer.count == 1
            assert engine.in_flight_requests() == [("m", "1", 0)]

    run(scenario)


def test_a_busy_instance_makes_the_call_wait_its_turn(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as (engine, runs):
            runs.gate.clear()
            runs.started.clear()
            first = asyncio.ensure_future(engine.infer(_request(1.0)))
            await asyncio.to_thread(runs.started.wait, 10)  # the one instance is busy
            second = asyncio.ensure_future(call_from("caller", runs, _request(5.0)))
            await asyncio.sleep(0.05)
            assert engine.pending_requests() == [("m", "1", 1)]  # queued, not run beside it
            runs.gate.set()
            answers = await asyncio.gather(first, second)
            assert [float(a.outputs["y"][0, 0]) for a in answers] == [2.0, 6.0]
            assert runs.most == 1
            assert "caller" not in runs.threads  # the instance's own thread ran it

    run(scenario)


def test_refused_input_and_a_failing_model_are_the_callers_errors(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as (engine, runs):
            with pytest.raises(InvalidArgument):
                await call_from("caller", runs, _request(1.0, shape=(1, 3)))
            with pytest.raises(ModelExecutionError, match="negative"):
                await call_from("caller", runs, _request(-1.0))
            (stats,) = engine.model_statistics("m")
            assert stats.fail.count == 2 and stats.success.count == 0
            assert stats.failure_reasons == {"OTHER": 1, "BACKEND": 1}
            # The instance came back: the next call runs on the calling thread again.
            response = await call_from("again", runs, _request(0.0))
            np.testing.assert_array_equal(response.outputs["y"], np.full((1, 2), 1.0))
            assert runs.threads == ["caller", "again"]
            assert engine.in_flight_requests() == [("m", "1", 0)]

    run(scenario)


def test_a_model_that_batches_runs_the_call_on_its_instance(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, "dynamic_batching { }") as (_engine, runs):
            response = await call_from("caller", runs, _request(2.0))
            np.testing.assert_array_equal(response.outputs["y"], np.full((1, 2), 3.0))
            assert runs.threads and "caller" not in runs.threads

    run(scenario)


def test_stopping_waits_for_a_call_running_on_its_callers_thread(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as (engine, runs):
            runs.gate.clear()
            runs.started.clear()
            call = asyncio.ensure_future(call_from("caller", runs, _request(2.0)))
            await asyncio.to_thread(runs.started.wait, 10)
            stopping = asyncio.ensure_future(engine.stop())
            await asyncio.sleep(0.05)
            assert not stopping.done()
            runs.gate.set()
            response = await call
            np.testing.assert_array_equal(response.outputs["y"], np.full((1, 2), 3.0))
            await stopping
            assert runs.threads == ["caller"]

    run(scenario)
