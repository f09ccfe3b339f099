"""OUTPUT = READY * (INPUT + START + END * CORRID), the graph of Triton's
`simple_dyna_sequence` ONNX model (which casts the UINT64 CORRID to INT32)."""

from __future__ import annotations

from typing import Any

import numpy as np


class InferdModel:
    def execute(self, batch: Any) -> dict[str, np.ndarray]:
        inputs = batch.inputs
        corrid = inputs["CORRID"].astype(np.int32)
        total = inputs["INPUT"] + inputs["START"] + inputs["END"] * corrid
        return {"OUTPUT": inputs["READY"] * total}
