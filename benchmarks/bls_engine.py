"""What a BLS hop costs inside the engine alone: no frontends, no client, no log lines.

    python benchmarks/bls_engine.py [--seconds 4] [--rounds 3]

The same models as `bls.py` (the example MLP; a Python model calling it with `exec()` and
timing that call), served by an `Engine` on uvloop with the server's usual observers
(statistics, Prometheus metrics, the trace log at level 0, Triton's tracer), called back to
back from the event loop. Per call:

- "exec() - mlp in engine": the call as the model timed it, minus the MLP request's time in
  the engine (received to sent): what `bls.py` calls the hop;
- "exec() - mlp compute": the call minus the MLP's own execution (its backend's `execute`):
  everything a BLS call adds to the work it asks for (both thread hops, checks, scheduler).

Rounds alternate with a direct call of the MLP (`mlp direct - compute`: what a request from
the engine's own loop adds). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import uvloop

from bls import BLS, MLP_CONFIG, WIDTH, _python_model
from common import write_mlp_repository
from inferd.backends.registry import BackendRegistry
from inferd.core.observer import FailureReason, Observer
from inferd.core.types import InferRequest, Timestamps
from inferd.engine.api import EngineSettings
from inferd.engine.engine import Engine
from inferd.metrics.prometheus import PrometheusMetrics
from inferd.metrics.statistics import Statistics
from inferd.metrics.trace import TraceLog
from inferd.metrics.triton_trace import TritonTracer


class MlpTimes:
    """An observer keeping each MLP request's time in the engine and its execution, in µs."""

    def __init__(self) -> None:
        self.in_engine: list[float] = []
        self.compute: list[float] = []

    def request_finished(
        self,
        model_name: str,
        model_version: str,
        timestamps: Timestamps,
        success: bool,
        inferred_rows: int = 0,
        cancelled: bool = False,
        failure: FailureReason | None = None,
    ) -> None:
        if model_name == "mlp" and success:
            t = timestamps
            self.in_engine.append((t.sent - t.received) / 1000)
            self.compute.append((t.compute_output_start - t.compute_input_end) / 1000)

    def model_versions_changed(self, model_name: str, versions: Sequence[str]) -> None:
        pass

    def batch_executed(self, *args: object, **kwargs: object) -> None:
        pass

    def version_load_finished(self, *args: object, **kwargs: object) -> None:
        pass


async def measure(repository: Path, seconds: float, rounds: int) -> None:
    statistics = Statistics()
    times = MlpTimes()
    observers: list[Observer] = [
        statistics,
        PrometheusMetrics(statistics),
        TraceLog(0),
        TritonTracer({}),
        times,
    ]
    engine = Engine(EngineSettings(repository), BackendRegistry(), observers, statistics)
    await engine.start()
    data = np.ones((1, WIDTH), dtype=np.float32)

    async def calls(model: str) -> tuple[list[float], list[float], list[float]]:
        """Per call: its latency, and (through BLS) exec() as the model timed it, in µs."""
        for _ in range(50):
            await engine.infer(InferRequest(model, {"input": data.copy()}))
        times.in_engine.clear()
        times.compute.clear()
        latency: list[float] = []
        took: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            response = await engine.infer(InferRequest(model, {"input": data.copy()}))
            latency.append((time.perf_counter() - start) * 1e6)
            if "EXEC_US" in response.outputs:
                took.append(float(response.outputs["EXEC_US"][0, 0]))
        return latency, took, list(zip(times.in_engine, times.compute, strict=True))  # type: ignore[return-value]

    print(f"{'µs, p50 (p99)':<28}{'mlp direct - compute':>24}{'exec() - mlp in engine':>26}")
    print(f"{'':<28}{'':>24}{'exec() - mlp compute':>26}")
    try:
        for round_ in range(rounds):
            direct, _, direct_times = await calls("mlp")
            _, took, bls_times = await calls("bls_mlp")
            overhead = [d - c for d, (_, c) in zip(direct, direct_times, strict=True)]
            hop = [t - e for t, (e, _) in zip(took, bls_times, strict=True)]
            whole = [t - c for t, (_, c) in zip(took, bls_times, strict=True)]
            print(
                f"round {round_ + 1:<22}{_p(overhead):>24}{_p(hop):>26}\n{'':<28}{'':>24}"
                f"{_p(whole):>26}"
            )
    finally:
        await engine.stop()


def _p(values: list[float]) -> str:
    return f"{np.percentile(values, 50):.1f} ({np.percentile(values, 99):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        write_mlp_repository(repository, MLP_CONFIG)
        _python_model(repository, "bls_mlp", BLS, "none")
        uvloop.run(measure(repository, args.seconds, args.rounds))


if __name__ == "__main__":
    main()
