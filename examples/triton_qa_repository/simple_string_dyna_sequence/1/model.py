"""The semantics of Triton's `dyna_sequence` test backend with a string CORRID.

Per sequence an accumulator: START sets it to INPUT, later requests add INPUT, END also adds
the correlation id read as an integer. OUTPUT is the accumulator; rows whose READY is 0 are
empty batch slots (their outputs are dropped by the server).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.backends.python import InferenceError


class InferdModel:
    def initialize(self, context: Any) -> None:
        # Each instance keeps its own sequences' sums: the batcher pins a sequence to one instance.
        self.sums: dict[bytes, np.int32] = {}

    def execute(self, batch: Any) -> dict[str, np.ndarray]:
        inputs = batch.inputs
        output = np.zeros_like(inputs["INPUT"])
        ready = np.flatnonzero(inputs["READY"][:, 0])
        # Read the ending ids first: a refused batch is rerun request by request, so no sum
        # may have changed before the error.
        ending = {
            row: _corrid_number(inputs["CORRID"][row, 0]) for row in ready if inputs["END"][row, 0]
        }
        for row in ready:
            corrid: bytes = inputs["CORRID"][row, 0]
            previous = 0 if inputs["START"][row, 0] else self.sums.get(corrid, 0)
            # INT32 array arithmetic wraps around, as Triton's C++ accumulator does.
            output[row] = inputs["INPUT"][row] + previous + ending.get(row, np.int32(0))
            if row in ending:
                self.sums.pop(corrid, None)
            else:
                self.sums[corrid] = output[row, 0]
        return {"OUTPUT": output}


def _corrid_number(corrid: bytes) -> np.int32:
    """The id as an INT32, as Triton's backend reads it (`std::stoi`)."""
    try:
        return np.int32(int(corrid))
    except (ValueError, OverflowError):
        raise InferenceError(f"correlation id {corrid!r} is not a 32-bit integer") from None
