"""SIGTERM while sequences, an ensemble and batches of an isolated Python model are in flight:
every accepted request is answered, the server exits 0 and no worker process outlives it."""

from __future__ import annotations

import shutil
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.integration.http_helpers import post_json
from tests.integration.server import running_server
from tests.integration.test_hostile_inputs import COPIED, EXAMPLES, tensor
from tests.integration.test_python_backend_isolated import alive

# Sleeps so that its batches are still executing when SIGTERM arrives; answers its pid.
SLOW_MODEL = """
import os
import time
import numpy as np

class InferdModel:
    def execute(self, batch):
        time.sleep(0.4)
        values = batch.inputs["IN"]
        return {"OUT": values + 1, "PID": np.full((len(values), 1), os.getpid())}
"""
SLOW_CONFIG = """
name: "slow_isolated"
backend: "python"
max_batch_size: 4
input [ { name: "IN", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [
  { name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] },
  { name: "PID", data_type: TYPE_INT64, dims: [ 1 ] }
]
dynamic_batching { max_queue_delay_microseconds: 50000 }
instance_group [ { count: 2, kind: KIND_CPU } ]
parameters { key: "isolation" value: { string_value: "process" } }
"""


def test_sigterm_finishes_sequences_ensembles_and_isolated_batches(tmp_path: Path) -> None:
    for name in COPIED:
        shutil.copytree(EXAMPLES / name, tmp_path / name)
    (tmp_path / "slow_isolated" / "1").mkdir(parents=True)
    (tmp_path / "slow_isolated" / "1" / "model.py").write_text(SLOW_MODEL)
    (tmp_path / "slow_isolated" / "config.pbtxt").write_text(SLOW_CONFIG)
    with running_server(tmp_path) as server:
        port = server.http_port
        _, warm = post_json(port, "/v2/models/slow_isolated/infer", slow_request())
        workers = {warm["outputs"][1]["data"][0]}
        jobs: list[tuple[str, dict[str, Any]]] = []
        for key in range(10):  # fewer than the 16 slots: no sequence waits for one
            for model in ("sequence_accumulate", "sequence_accumulate_state"):
                parameters = {"sequence_id": 100 + key, "sequence_start": True}
                jobs.append(
                    (
                        model,
                        {
                            "inputs": [tensor("INPUT", "INT32", [1, 1], [key])],
                            "parameters": parameters,
                        },
                    )
                )
            jobs.append(("pipeline", {"inputs": [tensor("RAW", "FP32", [1, 8], [0.5] * 8)]}))
            jobs.append(("slow_isolated", slow_request()))
        with ThreadPoolExecutor(len(jobs)) as pool:
            answers = [
                pool.submit(post_json, port, f"/v2/models/{model}/infer", document)
                for model, document in jobs
            ]
            time.sleep(0.2)  # every request accepted, the slow batches executing
            server.process.send_signal(signal.SIGTERM)
            results = [answer.result() for answer in answers]
        assert server.process.wait(timeout=30) == 0
    assert Counter(status for status, _ in results) == {200: len(jobs)}, results
    for (model, document), (_, body) in zip(jobs, results, strict=True):
        if model.startswith("sequence"):
            assert body["outputs"][0]["data"] == document["inputs"][0]["data"]
        if model == "slow_isolated":
            workers.add(body["outputs"][1]["data"][0])
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, f"worker processes {workers} outlived the server"
        time.sleep(0.05)


def slow_request() -> dict[str, Any]:
    return {"inputs": [tensor("IN", "FP32", [1, 1], [1.0])]}
