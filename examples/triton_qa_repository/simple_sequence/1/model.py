"""OUTPUT = READY * (INPUT + START), the graph of Triton's `simple_sequence` ONNX model."""

from __future__ import annotations

from typing import Any

import numpy as np


class InferdModel:
    def execute(self, batch: Any) -> dict[str, np.ndarray]:
        inputs = batch.inputs
        return {"OUTPUT": inputs["READY"] * (inputs["INPUT"] + inputs["START"])}
