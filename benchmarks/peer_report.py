"""What benchmarks/peers.py prints and draws: the machine, the results table (best round of each
cell with the spread over rounds), the headline ratios, and the latency-vs-throughput plot."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from common import Cell
from peer_checks import Limit
from peer_clients import PLAIN, Sample
from peer_servers import TITLES

# Line style of each client/transport in the plot.
STYLES = {"HTTP binary": "-", "HTTP JSON": "--", "gRPC": ":", PLAIN: "-."}
COLOURS = {
    "inferd": "tab:blue",
    "triton": "tab:green",
    "mlserver": "tab:orange",
    "rayserve": "tab:red",
}


def label(cell: Cell) -> str:
    """The cell's line in the progress output."""
    client = cell.transport if cell.transport == PLAIN else f"perf_analyzer {cell.transport}"
    return f"{cell.server} / {client} / batching {cell.batching} / c={cell.concurrency}"


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        ),
        "unknown CPU",
    )
    return f"machine: {model}, {os.cpu_count()} logical CPUs"


def best(samples: list[Sample]) -> tuple[Sample, float]:
    """The round with the highest throughput, and the spread of throughput over rounds (%)."""
    top = max(samples, key=lambda sample: sample.throughput)
    low = min(sample.throughput for sample in samples)
    return top, 100 * (top.throughput - low) / top.throughput


def table(
    rounds: dict[Cell, list[Sample]], limit: Limit, unmeasured: dict[tuple[str, str], str]
) -> str:
    """The best round of each cell, then a row for each (server, transport) not measured, with
    the reason."""
    lines = [
        f"{'server':<9} {'client / transport':<27} {'batch':<5} {'c':>3} {'inf/s':>8} "
        f"{'spread':>7} {'p50 ms':>8} {'p99 ms':>8} {'CPU':>5} {'inf/CPU-s':>9} "
        f"{'inferd/this':>11}",
    ]
    for cell in sorted(rounds, key=_order):
        sample, spread = best(rounds[cell])
        ratio = ""
        ours = rounds.get(Cell("inferd", cell.transport, cell.batching, cell.concurrency))
        if ours and cell.server != "inferd":
            ratio = f"{best(ours)[0].throughput / sample.throughput:10.2f}x"
        lines.append(
            f"{cell.server:<9} {_client(cell.transport):<27} {cell.batching:<5} "
            f"{cell.concurrency:>3} {sample.throughput:8.0f} {_spread(rounds[cell], spread)} "
            f"{sample.p50_ms:8.2f} {sample.p99_ms:8.2f} {sample.server_cpu:5.2f} "
            f"{_per_cpu_second(sample)} {ratio:>11}"
        )
    for (server, transport), why in sorted(
        unmeasured.items(), key=lambda item: _order(Cell(*item[0], "off", 0))
    ):
        lines.append(f"{server:<9} {_client(transport):<27} not measured: {why}")
    lines.append(f"raw ONNX Runtime in-process (one thread, server's core): {limit}")
    lines.append(
        "inf/s: best round; spread: (best - worst) / best over rounds, (1) where one round gave "
        "figures; CPU: cores the server's process tree kept busy (below 1, the server had time "
        "to spare: the load generator or the machine set the pace); inf/CPU-s: inferences per "
        "second of server CPU; inferd/this: inferd's throughput over this server's, same cell."
    )
    return "\n".join(lines)


def _per_cpu_second(sample: Sample) -> str:
    return (
        f"{sample.throughput / sample.server_cpu:9.0f}" if sample.server_cpu > 0 else " " * 8 + "-"
    )


def _spread(samples: list[Sample], spread: float) -> str:
    return f"{spread:6.0f}%" if len(samples) > 1 else f"{'(1)':>7}"


def _client(transport: str) -> str:
    return "plain client, HTTP JSON" if transport == PLAIN else f"perf_analyzer {transport}"


def _order(cell: Cell) -> tuple[int, int, int, int]:
    return (
        list(TITLES).index(cell.server),
        list(STYLES).index(cell.transport),
        cell.batching == "on",
        cell.concurrency,
    )


def plot(rounds: dict[Cell, list[Sample]], limit: Limit, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    for axis, batching in zip(axes, ("off", "on"), strict=True):
        lines = sorted(
            {(c.server, c.transport) for c in rounds if c.batching == batching},
            key=lambda line: _order(Cell(*line, batching, 0)),
        )
        for server, transport in lines:
            cells = sorted(
                (
                    c
                    for c in rounds
                    if (c.server, c.transport, c.batching) == (server, transport, batching)
                ),
                key=lambda c: c.concurrency,
            )
            points = [best(rounds[c])[0] for c in cells]
            axis.plot(
                [p.throughput for p in points],
                [p.p50_ms for p in points],
                marker="o",
                linestyle=STYLES[transport],
                color=COLOURS[server],
                label=f"{server}, {_client(transport)}",
            )
            for cell, point in zip(cells, points, strict=True):
                axis.annotate(
                    f"c={cell.concurrency}",
                    (point.throughput, point.p50_ms),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        axis.plot(
            [limit.throughput],
            [limit.p50_ms],
            marker="*",
            markersize=12,
            color="black",
            linestyle="",
            label="raw ONNX Runtime, batch 1",
        )
        if batching == "on":
            axis.axvline(
                limit.batched_throughput,
                color="black",
                linestyle="--",
                linewidth=0.8,
                label="raw ONNX Runtime, batches of 16",
            )
        axis.set_title(f"batching {batching} (max batch 16, 0.5 ms where on)")
        axis.set_xlabel("throughput (inferences/s)")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    axes[0].set_ylabel("p50 latency (ms)")
    figure.suptitle(
        "Example MLP, one server core, ONNX Runtime with one intra-op thread everywhere"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
