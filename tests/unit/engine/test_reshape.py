"""A config `reshape` through the Engine's request path: the model gets each input in its
`reshape` shape and the client gets each output in its `dims`, the batch axis kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from inferd.backends.registry import BackendRegistry
from inferd.core.errors import InvalidArgument
from inferd.core.types import InferRequest, RequestedOutput
from inferd.engine.api import EngineSettings
from inferd.engine.engine import Engine
from tests.unit.engine.fakes import FakeBackend

CONFIG = """
name: "m"
backend: "fake"
max_batch_size: 8
input [ { name: "x", data_type: TYPE_FP32, dims: [ 4 ], reshape: { shape: [ 2, 2 ] } } ]
output [
  { name: "y", data_type: TYPE_FP32, dims: [ 4 ], reshape: { shape: [ 2, 2 ] } },
  { name: "x_shape", data_type: TYPE_INT64, dims: [ 2 ] }
]
"""


def infer(repository: Path, request: InferRequest) -> dict[str, np.ndarray]:
    async def main() -> dict[str, np.ndarray]:
        engine = Engine(EngineSettings(repository), BackendRegistry({"fake": FakeBackend}))
        await engine.start()
        try:
            return (await engine.infer(request)).outputs
        finally:
            await engine.stop()

    return asyncio.run(main())


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.pbtxt").write_text(CONFIG)
    return tmp_path


def test_inputs_reach_the_model_reshaped_and_outputs_return_in_their_dims(
    repository: Path,
) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    outputs = infer(repository, InferRequest("m", {"x": x}))
    assert outputs["x_shape"].tolist() == [[2, 2]] * 3
    assert outputs["y"].shape == (3, 4)
    np.testing.assert_array_equal(outputs["y"], x)


def test_an_output_left_out_of_the_request_is_not_reshaped(repository: Path) -> None:
    x = np.zeros((1, 4), dtype=np.float32)
    outputs = infer(repository, InferRequest("m", {"x": x}, outputs=[RequestedOutput("x_shape")]))
    assert list(outputs) == ["x_shape"]


def test_an_input_that_cannot_take_the_reshape_is_refused(repository: Path) -> None:
    (repository / "m" / "config.pbtxt").write_text(
        CONFIG.replace("dims: [ 4 ], reshape", "dims: [ -1 ], reshape")
    )
    x = np.zeros((1, 3), dtype=np.float32)
    with pytest.raises(InvalidArgument, match="cannot be reshaped to \\[2, 2\\]"):
        infer(repository, InferRequest("m", {"x": x}))
