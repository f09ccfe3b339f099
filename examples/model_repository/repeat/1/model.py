"""A decoupled model: streams its input IN back TIMES times, one response each, numbered by
IDX, then the final flag. The responses come from a thread of the model's own, so `execute`
returns at once and the instance takes the next request while this one still streams."""

import threading

import numpy as np


class InferdModel:
    def execute(self, batch):
        for request in batch.requests:
            values = request.inputs["IN"].copy()
            times = request.inputs.get("TIMES")
            count = 1 if times is None else int(times[0])
            threading.Thread(target=self.respond, args=(request.sender, values, count)).start()

    def respond(self, sender, values, count):
        for index in range(count):
            if sender.is_cancelled():  # the client went away: stop early
                break
            sender.send({"OUT": values, "IDX": np.array([index], np.uint32)})
        sender.close()  # the final flag, alone
