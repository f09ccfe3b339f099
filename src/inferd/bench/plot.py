"""The latency vs throughput picture: p50 (solid) and p99 (dashed) per run, one colour each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inferd.bench.results import RunResult


def plot_runs(runs: Sequence[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    try:
        for index, run in enumerate(runs):
            colour = f"C{index % 10}"
            # A step where every request failed has no latency (NaN): matplotlib leaves it out.
            throughput = [step.throughput for step in run.steps]
            p50 = np.array([step.p50_ms for step in run.steps], dtype=np.float64)
            p99 = np.array([step.p99_ms for step in run.steps], dtype=np.float64)
            axes.plot(throughput, p50, "o-", color=colour, label=f"{run.label} p50")
            axes.plot(throughput, p99, "s--", color=colour, label=f"{run.label} p99")
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
