"""A small fake backend for engine tests: it loads any model whose config names it (unless the
config's `fail` parameter is set), places instances wherever the config says (`gpus`: whether
it has GPUs to place them on), and runs y = x + the config's `offset` parameter (and, when
asked for, `x_shape`: the shape of x it was given)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferd.backends.base import BatchRequest, Device
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array


class FakeInstance:
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        outputs = {"y": inputs["x"] + self.offset}
        if "x_shape" in output_names:  # the shape the model was given, without the batch axis
            x = inputs["x"]
            outputs["x_shape"] = np.tile(np.array(x.shape[1:], dtype=np.int64), (len(x), 1))
        return outputs

    def close(self) -> None:
        pass


class FakeModel:
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def create_instance(self, device: Device, name: str) -> FakeInstance:
        return FakeInstance(self.offset)

    def close(self) -> None:
        pass


class FakeBackend:
    platforms = ("fake",)
    default_model_filename = "model.fake"

    def __init__(self, name: str = "fake", gpus: bool = False) -> None:
        self.name = name
        self.gpus = gpus

    def gpu_available(self) -> bool:
        return self.gpus

    def matches(self, version_path: Path) -> bool:
        return False

    def complete_config(self, config: Any, version_path: Path, default_max_batch_size: int) -> None:
        pass

    def load(self, config: Any, version_path: Path) -> FakeModel:
        if "fail" in config.parameters:
            raise InvalidArgument(f"model '{config.name}' asked the fake backend to fail")
        offset = config.parameters["offset"].string_value if "offset" in config.parameters else 0
        return FakeModel(float(offset))
