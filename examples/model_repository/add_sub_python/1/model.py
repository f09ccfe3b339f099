"""OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1, for a whole batch at once."""

import numpy as np

from inferd.backends.python import Batch, ModelContext


class InferdModel:
    def initialize(self, context: ModelContext) -> None:
        self.instance = context.instance_name

    def execute(self, batch: Batch) -> dict[str, np.ndarray]:
        in0, in1 = batch.inputs["INPUT0"], batch.inputs["INPUT1"]
        return {"OUTPUT0": in0 + in1, "OUTPUT1": in0 - in1}
