"""A trivial Python backend instance and helpers to drive a `DynamicBatcher` in tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import numpy as np

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import parse_pbtxt
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import ModelInstance
from inferd.scheduling.settings import BatchingSettings

MODEL = """
name: "m"
max_batch_size: {max_batch_size}
input [ {{ name: "x", data_type: TYPE_FP32, dims: [ -1 ] }} ]
output [ {{ name: "y", data_type: TYPE_FP32, dims: [ -1 ] }} ]
"""


def settings(extra: str = "", max_batch_size: int = 8) -> BatchingSettings:
    """Batching settings parsed from a real config with `extra` appended."""
    return BatchingSettings.from_config(
        parse_pbtxt(MODEL.format(max_batch_size=max_batch_size) + extra)
    )


def request(value: float, rows: int = 1, width: int = 4, **parameters: object) -> InferRequest:
    inputs = {"x": np.full((rows, width), value, dtype=np.float32)}
    return InferRequest("m", inputs, parameters=dict(parameters))


class Doubler:
    """y = 2x. Records each batch's first-column values; `gate` holds executions back, a row
    whose value is in `slow` makes its batch sleep 0.1 s, and one whose value is in `refuse`
    makes the batch fail as a backend refusing a client's input does."""

    def __init__(
        self,
        gate: threading.Event | None = None,
        slow: frozenset[float] = frozenset(),
        refuse: frozenset[float] = frozenset(),
    ):
        self.gate = gate
        self.slow = slow
        self.refuse = refuse
        self.batches: list[list[float]] = []

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest] = (),
    ) -> dict[str, Array]:
        x = inputs["x"]
        if self.refuse.intersection(x[:, 0].tolist()):
            raise InvalidArgument("refused input")
        if self.gate is not None:
            self.gate.wait(10)
        if self.slow.intersection(x[:, 0].tolist()):
            time.sleep(0.1)
        self.batches.append(x[:, 0].tolist())
        return {"y": x * 2}

    def close(self) -> None:
        pass


def instances(*backends: Doubler) -> list[ModelInstance]:
    return [
        ModelInstance(f"m_{i}", Device(DeviceKind.CPU), backend)
        for i, backend in enumerate(backends)
    ]
