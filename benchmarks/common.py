"""Shared pieces of the benchmarks: example models, a served repository, latency summaries."""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT))

from tests.integration.server import RunningServer, running_server  # noqa: E402
from tests.integration.server import free_port as free_port  # noqa: E402

import generate_models  # noqa: E402

MLP_SIZES = (256, 1024, 1024, 256)


def write_mlp_repository(repository: Path, config: str | None) -> Path:
    """The example MLP under `repository/mlp`, with `config` as its config.pbtxt (if given)."""
    generate_models.mlp_model(repository / "mlp" / "1" / "model.onnx", MLP_SIZES)
    if config is not None:
        (repository / "mlp" / "config.pbtxt").write_text(config)
    return repository / "mlp" / "1" / "model.onnx"


@contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Run the block (and the processes it starts) on `cpus`, then restore this process."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpu_list(cpus: str) -> set[int]:
    """A `taskset -c` list ("0", "4-7", "0,2-3") as a set of CPUs."""
    chosen: set[int] = set()
    for part in cpus.split(","):
        first, _, last = part.partition("-")
        chosen.update(range(int(first), int(last or first) + 1))
    return chosen


@contextmanager
def served(repository: Path, *args: str, cpu: str | None = None) -> Iterator[RunningServer]:
    """The real server, optionally pinned to CPUs (a `taskset -c` list, e.g. cpu="0"). Pinned
    from its start, as `taskset` would launch it: what it sizes by its usable CPUs at start
    (the relay's one-CPU rule) sees them."""
    with ExitStack() as stack:
        with pinned(cpu_list(cpu) if cpu else None):
            server = stack.enter_context(running_server(repository, *args))
        yield server


@dataclass
class Figures:
    label: str
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def row(self, baseline: Figures | None = None, samples_per_request: int = 1) -> str:
        ratio = ""
        if baseline is not None:
            ratio = f"{self.throughput * samples_per_request / baseline.throughput:8.3f}x"
        return (
            f"{self.label:<44} {self.throughput:10.1f}/s {self.percentile(50):8.3f} "
            f"{self.percentile(99):8.3f} {ratio}"
        )


HEADER = f"{'':<44} {'req/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'vs raw':>9}"


def time_calls(label: str, call: Callable[[], object], seconds: float, warmup: int = 20) -> Figures:
    for _ in range(warmup):
        call()
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        begin = time.perf_counter()
        call()
        end = time.perf_counter()
        latencies.append((end - begin) * 1000)
        if end >= deadline:
            break
    return Figures(label, len(latencies), end - start, latencies)


def median(values: list[float]) -> float:
    return statistics.median(values)


def load_from_processes(
    make_call: Callable[[], Callable[[], object]], concurrency: int, seconds: float, label: str
) -> Figures:
    """Closed loop from `concurrency` client processes (so the client's GIL caps nothing), each
    making its own call with `make_call()` and repeating it back to back for `seconds`."""
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[tuple[int, float, list[float]]] = context.Queue()
    start_at = time.time() + 2.0

    def client() -> None:
        call = make_call()
        for _ in range(20):
            call()
        while time.time() < start_at:
            time.sleep(0.001)
        figures = time_calls("", call, seconds, warmup=0)
        results.put((figures.requests, figures.seconds, figures.latencies_ms))

    workers = [context.Process(target=client) for _ in range(concurrency)]
    for worker in workers:
        worker.start()
    reports = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    requests = sum(report[0] for report in reports)
    elapsed = max(report[1] for report in reports)
    return Figures(label, requests, elapsed, [ms for report in reports for ms in report[2]])


@dataclass(frozen=True)
class Cell:
    """One measurement of a side-by-side table: (server, transport, batching, concurrency)."""

    server: str
    transport: str
    batching: str
    concurrency: int
