"""The model lifecycle through the Engine, with a small fake backend and a real repository
folder: atomic reloads, ensembles following their composing models, control-mode refusals,
and strict readiness. No server: the Engine is called as the frontends call it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferd.backends.registry import BackendRegistry
from inferd.core.errors import InvalidArgument, NotFound, Unavailable, Unsupported
from inferd.core.types import InferRequest
from inferd.engine.api import EngineSettings, ModelState, VersionStatus
from inferd.engine.control import ControlMode
from inferd.engine.engine import Engine
from tests.unit.engine.fakes import FakeBackend


def model_config(name: str, offset: int = 1, fail: bool = False) -> str:
    """A model served by the fake backend: y = x + offset; `fail` makes its load fail."""
    parameters = f'{{ key: "offset" value: {{ string_value: "{offset}" }} }}'
    if fail:
        parameters += ', { key: "fail" value: { string_value: "yes" } }'
    return f"""
    name: "{name}"
    backend: "fake"
    input [ {{ name: "x", data_type: TYPE_FP32, dims: [ 2 ] }} ]
    output [ {{ name: "y", data_type: TYPE_FP32, dims: [ 2 ] }} ]
    parameters [ {parameters} ]
    """


ENSEMBLE = """
name: "ens"
platform: "ensemble"
input [ { name: "IN", data_type: TYPE_FP32, dims: [ 2 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 2 ] } ]
ensemble_scheduling { step [ { model_name: "m", model_version: -1,
  input_map { key: "x", value: "IN" }, output_map { key: "y", value: "OUT" } } ] }
"""


def write_model(repository: Path, name: str, config: str) -> None:
    (repository / name / "1").mkdir(parents=True, exist_ok=True)
    (repository / name / "config.pbtxt").write_text(config)


def run(repository: Path, scenario: Callable[[Engine], Awaitable[None]], **settings: Any) -> None:
    """Start an Engine on `repository`, run `scenario` against it, then stop it."""

    async def main() -> None:
        engine = Engine(
            EngineSettings(repository, **settings), BackendRegistry({"fake": FakeBackend})
        )
        await engine.start()
        try:
            await scenario(engine)
        finally:
            await engine.stop()

    asyncio.run(main())


async def infer(engine: Engine, model: str) -> list[float]:
    request = InferRequest(model, {_input(model): np.zeros(2, dtype=np.float32)})
    response = await engine.infer(request)
    (output,) = response.outputs.values()
    result: list[float] = output.tolist()
    return result


def _input(model: str) -> str:
    return "IN" if model == "ens" else "x"


def index(engine: Engine) -> dict[str, VersionStatus]:
    return {row.name: row for row in engine.repository_index()}


def test_a_reload_swaps_and_a_failed_reload_keeps_the_old_version_serving(
    tmp_path: Path,
) -> None:
    write_model(tmp_path, "m", model_config("m", offset=1))

    async def scenario(engine: Engine) -> None:
        assert await infer(engine, "m") == [1.0, 1.0]
        write_model(tmp_path, "m", model_config("m", offset=2))
        await engine.control_load("m", None)
        assert await infer(engine, "m") == [2.0, 2.0]
        write_model(tmp_path, "m", model_config("m", offset=3, fail=True))
        with pytest.raises(InvalidArgument, match="asked the fake backend to fail"):
            await engine.control_load("m", None)
        assert await infer(engine, "m") == [2.0, 2.0]
        assert index(engine)["m"].state is ModelState.READY
        assert engine.model_ready("m")

    run(tmp_path, scenario, control_mode=ControlMode.EXPLICIT, startup_models=("m",))


def test_a_failed_reload_says_why_on_the_row_of_the_version_still_serving(
    tmp_path: Path,
) -> None:
    write_model(tmp_path, "m", model_config("m", offset=1))

    async def scenario(engine: Engine) -> None:
        write_model(tmp_path, "m", model_config("m", offset=2, fail=True))
        with pytest.raises(InvalidArgument):
            await engine.control_load("m", None)
        row = index(engine)["m"]
        assert (row.version, row.state) == ("1", ModelState.READY)
        assert row.reason.startswith("serving the last load; reloading failed: 1: ")
        assert "asked the fake backend to fail" in row.reason
        write_model(tmp_path, "m", model_config("m", offset=3))
        await engine.control_load("m", None)  # a good reload clears it
        assert index(engine)["m"].reason == ""
        assert await infer(engine, "m") == [3.0, 3.0]

    run(tmp_path, scenario, control_mode=ControlMode.EXPLICIT, startup_models=("m",))


def test_a_failed_first_load_is_unavailable_with_its_reason(tmp_path: Path) -> None:
    write_model(tmp_path, "m", model_config("m", fail=True))

    async def scenario(engine: Engine) -> None:
        row = index(engine)["m"]
        assert (row.version, row.state) == ("1", ModelState.UNAVAILABLE)
        assert "asked the fake backend to fail" in row.reason
        with pytest.raises(Unavailable, match="has no ready version"):
            await infer(engine, "m")

    run(tmp_path, scenario)


def test_unloading_a_composing_model_makes_its_ensemble_unavailable_with_the_reason(
    tmp_path: Path,
) -> None:
    write_model(tmp_path, "m", model_config("m", offset=1))
    write_model(tmp_path, "ens", ENSEMBLE)

    async def scenario(engine: Engine) -> None:
        await engine.control_load("ens", None)  # loads the composing model first
        assert index(engine)["m"].state is ModelState.READY
        assert await infer(engine, "ens") == [1.0, 1.0]

        await engine.control_unload("m")
        row = index(engine)["ens"]
        assert row.state is ModelState.UNAVAILABLE
        assert "step 0 (model 'm'): the composing model is not available" in row.reason
        assert index(engine)["m"] == VersionStatus("m", "", ModelState.UNAVAILABLE, "unloaded")
        assert not engine.model_ready("ens")
        with pytest.raises(Unavailable):
            await infer(engine, "ens")

        # Loading the composing model again brings the ensemble back, following its reload.
        write_model(tmp_path, "m", model_config("m", offset=5))
        await engine.control_load("m", None)
        assert index(engine)["ens"].state is ModelState.READY
        assert await infer(engine, "ens") == [5.0, 5.0]

    run(tmp_path, scenario, control_mode=ControlMode.EXPLICIT)


@pytest.mark.parametrize("mode", [ControlMode.NONE, ControlMode.POLL])
def test_load_and_unload_are_refused_outside_explicit_mode(
    tmp_path: Path, mode: ControlMode
) -> None:
    write_model(tmp_path, "m", model_config("m"))

    async def scenario(engine: Engine) -> None:
        assert engine.model_ready("m")  # every model loads at start
        with pytest.raises(Unsupported, match=f"model control mode '{mode.value}'"):
            await engine.control_load("m", None)
        # Triton's qa/L0_http and qa/L0_grpc restricted-API tests match this wording.
        refusal = (
            f"explicit model load / unload is not allowed in model control mode '{mode.value}'"
        )
        with pytest.raises(Unsupported, match=refusal):
            await engine.control_unload("m")
        assert engine.model_ready("m")

    run(tmp_path, scenario, control_mode=mode, poll_interval_s=3600)


def test_explicit_mode_loads_only_what_is_named_and_refuses_unknown_names(
    tmp_path: Path,
) -> None:
    write_model(tmp_path, "m", model_config("m"))
    write_model(tmp_path, "other", model_config("other"))

    async def scenario(engine: Engine) -> None:
        assert engine.model_ready("m")
        assert index(engine)["other"].state is ModelState.UNKNOWN
        with pytest.raises(NotFound):
            engine.model_ready("other")
        with pytest.raises(NotFound):
            await engine.control_unload("missing")
        with pytest.raises(InvalidArgument):
            await engine.control_load("../m", None)
        await engine.control_unload("other")  # in the repository, not loaded: a no-op

    run(tmp_path, scenario, control_mode=ControlMode.EXPLICIT, startup_models=("m",))


@pytest.mark.parametrize("strict", [True, False])
def test_strict_readiness_waits_for_every_model_asked_for(tmp_path: Path, strict: bool) -> None:
    write_model(tmp_path, "m", model_config("m"))
    write_model(tmp_path, "bad", model_config("bad", fail=True))

    async def scenario(engine: Engine) -> None:
        assert engine.model_ready("m")
        assert not engine.model_ready("bad")
        assert engine.is_ready() is not strict
        assert engine.is_live()

    run(tmp_path, scenario, strict_readiness=strict)


def test_a_stopped_engine_is_neither_live_nor_ready(tmp_path: Path) -> None:
    write_model(tmp_path, "m", model_config("m"))

    async def main() -> None:
        engine = Engine(EngineSettings(tmp_path), BackendRegistry({"fake": FakeBackend}))
        await engine.start()
        assert engine.is_ready()
        await engine.stop()
        assert not engine.is_live()
        assert not engine.is_ready()
        assert engine.repository_index() == [VersionStatus("m", "", ModelState.UNKNOWN)]

    asyncio.run(main())


@pytest.mark.parametrize("mode", list(ControlMode))
def test_an_unreadable_repository_fails_the_start_in_every_mode(
    tmp_path: Path, mode: ControlMode
) -> None:
    async def start() -> None:
        settings = EngineSettings(tmp_path / "gone", control_mode=mode)
        await Engine(settings, BackendRegistry({"fake": FakeBackend})).start()

    with pytest.raises(NotFound, match="is not a folder"):
        asyncio.run(start())
