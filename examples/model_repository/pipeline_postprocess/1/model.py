"""The `pipeline` ensemble's last step: average the two branches' scores and pick the best."""

from __future__ import annotations

import numpy as np

from inferd.backends.python import Batch


class InferdModel:
    def execute(self, batch: Batch) -> dict[str, np.ndarray]:
        scores = (batch.inputs["SCORES_A"] + batch.inputs["SCORES_B"]) / 2  # [rows, 4]
        label = scores.argmax(axis=1).astype(np.int32)[:, None]  # [rows, 1]
        return {"SCORES": scores.astype(np.float32), "LABEL": label}
