"""`Engine.stream` for a model that is not decoupled (its one response, final), the decoupled
query, and the refusal of a decoupled model (or an optional input) on a backend that cannot
serve it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inferd.core.types import InferRequest
from inferd.engine.api import LoadOptions, ModelState
from inferd.engine.engine import Engine
from tests.unit.engine.test_lifecycle import index, model_config, run, write_model


def test_a_model_that_is_not_decoupled_streams_its_one_response(tmp_path: Path) -> None:
    write_model(tmp_path, "m", model_config("m", offset=2))

    async def scenario(engine: Engine) -> None:
        assert not engine.model_decoupled("m")
        request = InferRequest("m", {"x": np.zeros(2, dtype=np.float32)}, id="r")
        responses = [response async for response in engine.stream(request)]
        assert len(responses) == 1
        (response,) = responses
        assert response.final and response.id == "r"
        assert response.outputs["y"].tolist() == [2.0, 2.0]

    run(tmp_path, scenario)


def test_a_decoupled_model_on_a_backend_that_cannot_stream_is_refused(tmp_path: Path) -> None:
    config = model_config("m") + "model_transaction_policy { decoupled: true }\n"
    write_model(tmp_path, "m", config)

    async def scenario(engine: Engine) -> None:
        row = index(engine)["m"]
        assert row.state is ModelState.UNAVAILABLE
        assert "decoupled" in row.reason and "'fake'" in row.reason

    for auto_complete in (True, False):
        load = LoadOptions(auto_complete_config=auto_complete)
        run(tmp_path, scenario, strict_readiness=False, load=load)


def test_an_optional_input_on_a_backend_that_needs_every_input_is_refused(
    tmp_path: Path,
) -> None:
    config = model_config("m").replace("dims: [ 2 ] }", "dims: [ 2 ], optional: true }", 1)
    write_model(tmp_path, "m", config)

    async def scenario(engine: Engine) -> None:
        row = index(engine)["m"]
        assert row.state is ModelState.UNAVAILABLE
        assert "inputs ['x'] are optional, but backend 'fake'" in row.reason

    run(tmp_path, scenario, strict_readiness=False)
