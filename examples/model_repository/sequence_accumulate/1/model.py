"""OUTPUT = running sum of INPUT over a sequence, kept per correlation id.

The sequence batcher feeds START, END, READY and CORRID ([rows, 1] each) next to INPUT; rows
whose READY is 0 are empty batch slots and their outputs are dropped by the server.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class InferdModel:
    def initialize(self, context: Any) -> None:
        self.sums: dict[Any, np.int32] = {}

    def execute(self, batch: Any) -> dict[str, np.ndarray]:
        inputs = batch.inputs
        output = np.zeros_like(inputs["INPUT"])
        for row in np.flatnonzero(inputs["READY"][:, 0]):
            corrid = inputs["CORRID"][row, 0]  # an integer, or bytes for string ids
            previous = 0 if inputs["START"][row, 0] else self.sums.get(corrid, 0)
            # INT32 array arithmetic wraps around, as the ONNX accumulator's does (load
            # generators such as perf_analyzer send random values).
            output[row] = inputs["INPUT"][row] + previous
            if inputs["END"][row, 0]:
                self.sums.pop(corrid, None)
            else:
                self.sums[corrid] = output[row, 0]
        return {"OUTPUT": output}
