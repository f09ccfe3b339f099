"""`baseline_server.py` started for a benchmark: pinned, on a free port, stopped afterwards."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, free_port

DELAY_US = 500
MAX_BATCH = 16


@dataclass(frozen=True)
class Baseline:
    url: str  # host:port, as perf_analyzer takes it
    pid: int


@contextmanager
def served_baseline(model: Path, batching: str, cpus: str | None) -> Iterator[Baseline]:
    """The baseline serving `model` with batching "on" (max batch 16, 500 µs) or "off", pinned
    to `cpus` (a `taskset -c` list) from its start when given."""
    port = free_port()
    command = [
        sys.executable, str(ROOT / "benchmarks" / "baseline_server.py"),
        str(model), "--port", str(port), "--delay-us", str(DELAY_US),
        "--max-batch", str(MAX_BATCH if batching == "on" else 1),
    ]  # fmt: skip
    # taskset execs the server, so the process keeps this pid.
    server = subprocess.Popen(["taskset", "-c", cpus, *command] if cpus else command)
    try:
        _wait_for_port(port)
        yield Baseline(f"127.0.0.1:{port}", server.pid)
    finally:
        server.terminate()
        server.wait()


def _wait_for_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"baseline server did not listen on {port}")
