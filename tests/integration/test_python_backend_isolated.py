"""Worker processes: a crash or hang fails only its batch and the worker comes back; BYTES
pass through shared memory; instances run in their own processes; none outlives the server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server

# 13 exits the worker, 11 segfaults it, 7 hangs it; every answer carries the worker's pid.
FRAGILE = """
import ctypes, os, time
import numpy as np

class InferdModel:
    def execute(self, batch):
        values = batch.inputs["IN"]
        if (values == 13).any():
            os._exit(1)
        if (values == 11).any():
            ctypes.string_at(0)
        if (values == 7).any():
            time.sleep(30)
        rows = len(values)
        return {"OUT": values * 2, "PID": np.full((rows, 1), os.getpid())}
"""

# Pure Python (holds the GIL) long enough for two concurrent requests to overlap.
SPIN = """
import os
import time
import numpy as np

class InferdModel:
    def execute(self, batch):
        total = 0
        for i in range(300_000):
            total += i
        time.sleep(0.05)  # long enough that concurrent requests always reach both instances
        rows = len(batch.inputs["IN"])
        return {"OUT": batch.inputs["IN"] * 2, "PID": np.full((rows, 1), os.getpid())}
"""

THREADS = """
import os
import numpy as np

class InferdModel:
    def execute(self, batch):
        rows = len(batch.inputs["IN"])
        threads = int(os.environ["OPENBLAS_NUM_THREADS"]) * int(os.environ["OMP_NUM_THREADS"])
        return {"OUT": np.full((rows, 1), threads), "PID": np.full((rows, 1), os.getpid())}
"""
WORKER_THREADS = 'parameters { key: "worker_threads" value: { string_value: "3" } }'

UPPER = """
import numpy as np

class InferdModel:
    def execute(self, batch):
        text = batch.inputs["TEXT"]
        return {"UPPER": np.vectorize(bytes.upper, otypes=[object])(text)}
"""

NUMERIC_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 4
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [
  {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }},
  {{ name: "PID", data_type: TYPE_INT64, dims: [ 1 ] }}
]
instance_group [ {{ count: {count}, kind: KIND_CPU }} ]
parameters {{ key: "isolation" value: {{ string_value: "process" }} }}
parameters {{ key: "execute_timeout_s" value: {{ string_value: "1" }} }}
"""

BYTES_CONFIG = """
name: "upper"
backend: "python"
max_batch_size: 4
input [ { name: "TEXT", data_type: TYPE_STRING, dims: [ -1 ] } ]
output [ { name: "UPPER", data_type: TYPE_STRING, dims: [ -1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 20000 }
parameters { key: "isolation" value: { string_value: "process" } }
"""


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("isolated")
    write(root, "fragile", FRAGILE, NUMERIC_CONFIG.format(name="fragile", count=1))
    write(root, "spin", SPIN, NUMERIC_CONFIG.format(name="spin", count=2))
    write(root, "upper", UPPER, BYTES_CONFIG)
    write(root, "threads", THREADS, NUMERIC_CONFIG.format(name="threads", count=1))
    threes = NUMERIC_CONFIG.format(name="threads_3", count=1) + WORKER_THREADS
    write(root, "threads_3", THREADS, threes)
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


def infer(server: RunningServer, model: str, value: int) -> tuple[int, int]:
    """OUT and the worker's pid for a one-row request."""
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=60)
    inputs = [httpclient.InferInput("IN", [1, 1], "INT32")]
    inputs[0].set_data_from_numpy(np.array([[value]], dtype=np.int32))
    result = client.infer(model, inputs)
    return int(result.as_numpy("OUT")[0, 0]), int(result.as_numpy("PID")[0, 0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: set[int], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"worker processes {pids} outlived their model"
        time.sleep(0.05)


def refused(server: RunningServer, value: int) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        infer(server, "fragile", value)
    return caught.value


@pytest.mark.parametrize(("value", "reason"), [(13, "exit code 1"), (11, "killed by SIGSEGV")])
def test_a_crash_fails_its_request_and_the_worker_comes_back(
    server: RunningServer, value: int, reason: str
) -> None:
    assert infer(server, "fragile", 3)[0] == 6
    _, before = infer(server, "fragile", 3)
    error = refused(server, value)
    assert error.status() == "503"
    assert f"instance fragile_0_0 of model 'fragile' crashed ({reason}); restarting" in str(
        error.message()
    )
    assert not alive(before)
    doubled, after = infer(server, "fragile", 4)
    assert doubled == 8 and after != before


def test_a_hang_times_out_and_the_worker_comes_back(server: RunningServer) -> None:
    _, before = infer(server, "fragile", 1)
    start = time.monotonic()
    error = refused(server, 7)
    assert time.monotonic() - start < 15  # the 30 s sleep was cut short, not waited out
    assert error.status() == "503" and "timed out after 1 s" in str(error.message())
    doubled, after = infer(server, "fragile", 5)
    assert doubled == 10 and after != before
    assert not alive(before)


def test_other_models_are_untouched_by_a_crash(server: RunningServer) -> None:
    _, spin_pid = infer(server, "spin", 1)
    refused(server, 13)
    assert alive(spin_pid)
    assert infer(server, "spin", 2)[0] == 4


def test_bytes_tensors_pass_through_shared_memory(server: RunningServer) -> None:
    text = np.array(
        [[b"hello", b"w\xc3\xb6rld", b""], [b"a" * 5000, b"x", b"\x00\xff"]], dtype=object
    )
    inputs = [grpcclient.InferInput("TEXT", [2, 3], "BYTES")]
    inputs[0].set_data_from_numpy(text)
    result = grpcclient.InferenceServerClient(server.grpc_url).infer("upper", inputs)
    expected = np.vectorize(bytes.upper, otypes=[object])(text)
    assert result.as_numpy("UPPER").tolist() == expected.tolist()


def test_instances_run_in_separate_processes(server: RunningServer) -> None:
    with ThreadPoolExecutor(4) as pool:
        pids = {pid for _, pid in pool.map(lambda v: infer(server, "spin", v), range(8))}
    assert len(pids) == 2
    assert server.process.pid not in pids


def test_unload_and_stop_leave_no_worker_behind(repository: Path) -> None:
    args = ("--model-control-mode", "explicit", "--load-model", "spin", "--load-model", "fragile")
    with running_server(repository, *args) as explicit:
        with ThreadPoolExecutor(4) as pool:
            spin = {pid for _, pid in pool.map(lambda v: infer(explicit, "spin", v), range(8))}
        _, fragile = infer(explicit, "fragile", 1)
        assert len(spin) == 2 and all(alive(pid) for pid in spin)
        httpclient.InferenceServerClient(explicit.http_url).unload_model("spin")
        wait_gone(spin)
        assert alive(fragile)
    wait_gone({fragile})


def test_workers_run_numeric_libraries_on_one_thread_unless_configured(
    server: RunningServer,
) -> None:
    # OUT = OPENBLAS_NUM_THREADS * OMP_NUM_THREADS as the worker sees them.
    assert infer(server, "threads", 0)[0] == 1
    assert infer(server, "threads_3", 0)[0] == 9
