"""The `pipeline` ensemble's first step: standardize each row of RAW (zero mean, unit variance)."""

from __future__ import annotations

import numpy as np

from inferd.backends.python import Batch


class InferdModel:
    def execute(self, batch: Batch) -> dict[str, np.ndarray]:
        raw = batch.inputs["RAW"]  # [rows, 8], every request of the batch stacked
        mean = raw.mean(axis=1, keepdims=True)
        std = raw.std(axis=1, keepdims=True)
        return {"FEATURES": ((raw - mean) / (std + 1e-6)).astype(np.float32)}
