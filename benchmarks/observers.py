"""What the server's observers cost per request: the statistics, the Prometheus metrics (with
and without latency histograms, with Triton's latency summaries), the verbose-log and trace
observers while off, and tracing every request into a trace file.

    python benchmarks/observers.py [--requests 200000] [--batch 8]

Each setup is fed the calls the engine makes for `--requests` requests in batches of `--batch`
(one `batch_executed` per batch, one `request_finished` per request); the best of `--rounds`
runs (5) is printed in ns per request. Compare with a server's CPU time per request (`per cpu-s` of
`benchmarks/batching.py`) for its share. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from inferd.core.observer import Observer
from inferd.core.types import Timestamps
from inferd.metrics.options import DEFAULT_QUANTILES
from inferd.metrics.prometheus import PrometheusMetrics
from inferd.metrics.statistics import Statistics
from inferd.metrics.trace import TraceLog
from inferd.metrics.triton_trace import TritonTracer

MARKS = Timestamps(1_000, 2_000, 50_000, 60_000, 400_000, 420_000, 500_000)


def setups(folder: Path) -> list[tuple[str, Callable[[], list[Observer]]]]:
    def metrics(histograms: bool, quantiles: Sequence[tuple[float, float]] = ()) -> list[Observer]:
        statistics = Statistics()
        return [
            statistics,
            PrometheusMetrics(statistics, histograms=histograms, quantiles=quantiles),
        ]

    def tracing() -> list[Observer]:
        tracer = TritonTracer()
        settings = {"trace_level": ["TIMESTAMPS"], "trace_rate": ["1"], "log_frequency": ["1000"]}
        tracer.update_trace_settings("", {**settings, "trace_file": [str(folder / "t.json")]})
        return [*metrics(True), TraceLog(0), tracer]

    return [
        ("statistics", lambda: [Statistics()]),
        ("+ metrics, histograms off", lambda: metrics(False)),
        ("+ metrics (the default)", lambda: metrics(True)),
        ("+ Triton's latency summaries", lambda: metrics(True, DEFAULT_QUANTILES)),
        (
            "+ verbose log and trace observers, off (the default)",
            lambda: [*metrics(True), TraceLog(0), TritonTracer()],
        ),
        ("+ tracing every request to a file", tracing),
    ]


def cost(observers: list[Observer], requests: int, batch: int, rounds: int) -> float:
    for observer in observers:
        observer.model_versions_changed("mlp", ["1"])
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(requests // batch):
            for observer in observers:
                observer.batch_executed("mlp", "1", batch, MARKS, "mlp_0_0")
            for _ in range(batch):
                for observer in observers:
                    observer.request_finished("mlp", "1", MARKS, True)
        best = min(best, (time.perf_counter_ns() - start) / requests)
    for observer in observers:
        if isinstance(observer, TritonTracer):
            observer.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=8)
    # On a loaded machine many short rounds find an undisturbed one (--requests 5000 --rounds 100).
    parser.add_argument("--rounds", type=int, default=5, help="the best round counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for label, build in setups(Path(folder)):
            best = cost(build(), args.requests, args.batch, args.rounds)
            print(f"{label:55s} {best:8.0f} ns/request")


if __name__ == "__main__":
    main()
