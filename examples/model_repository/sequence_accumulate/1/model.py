"""OUTPUT = running sum of INPUT over a sequence, kept per correlation id.

The sequence batcher feeds START, END, READY and CORRID ([rows, 1] each) next to INPUT; rows
whose READY is 0 are empty batch slots and their outputs are dropped by the server.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class InferdModel:
    def initialize(self, context: Any) -> None:
        self.sums: dict[Any, int] = {}

    def execute(self, batch: Any) -> dict[str, np.ndarray]:
        inputs = batch.inputs
        values = inputs["INPUT"][:, 0]
        output = np.zeros_like(inputs["INPUT"])
        for row, ready in enumerate(inputs["READY"][:, 0]):
            if not ready:
                continue
            corrid = inputs["CORRID"][row, 0]  # an integer, or bytes for string ids
            total = (0 if inputs["START"][row, 0] else self.sums.get(corrid, 0)) + int(values[row])
            output[row, 0] = total
            if inputs["END"][row, 0]:
                self.sums.pop(corrid, None)
            else:
                self.sums[corrid] = total
        return {"OUTPUT": output}
