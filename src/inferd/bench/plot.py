"""The latency vs throughput picture: p50 (solid) and p99 (dashed) per run, one colour each.

For streaming runs (all of them, or none: the runner refuses a mix) the latency is the time to
the first response and the throughput counts responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from inferd.bench.results import RunResult


def plot_runs(runs: Sequence[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    streaming = any(run.streaming for run in runs)
    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    try:
        for index, run in enumerate(runs):
            colour = f"C{index % 10}"
            # A step where every request failed has no latency (NaN): matplotlib leaves it out.
            if streaming:
                throughput = _array([step.responses_per_s for step in run.steps])
                p50 = _array([step.ttft_p50_ms for step in run.steps])
                p99 = _array([step.ttft_p99_ms for step in run.steps])
            else:
                throughput = _array([step.throughput for step in run.steps])
                p50 = _array([step.p50_ms for step in run.steps])
                p99 = _array([step.p99_ms for step in run.steps])
            axes.plot(throughput, p50, "o-", color=colour, label=f"{run.label} p50")
            axes.plot(throughput, p99, "s--", color=colour, label=f"{run.label} p99")
        if streaming:
            axes.set_xlabel("throughput (responses/s)")
            axes.set_ylabel("time to first response (ms)")
            axes.set_title("time to first response vs throughput")
        else:
            axes.set_xlabel("throughput (infer/s)")
            axes.set_ylabel("latency (ms)")
            axes.set_title("latency vs throughput")
        axes.set_xlim(left=0)
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def _array(values: list[float | None]) -> npt.NDArray[np.float64]:
    return np.array(values, dtype=np.float64)  # None (nothing measured) becomes NaN
