"""Panels of a Grafana dashboard drawn with matplotlib where its grid places them: time series
as lines (series that stay at 0 left out of the legend), a heatmap as an image, a stat as its
number, rows as headings, and "No data" where a query has none (the GPU panels on a machine
without one)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from matplotlib.ticker import EngFormatter, Formatter, PercentFormatter
from promql_subset import Scrape

Series = Callable[[str, str, Sequence[Scrape]], dict[str, list[float]]]
UNIT = 0.34  # inches per grid unit of height; the width is 24 columns
WIDTH = 18.0
BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"


def _formatter(unit: str) -> Formatter:
    if unit == "percentunit":
        return PercentFormatter(1.0)
    suffix = {"s": "s", "bytes": "B", "reqps": "req/s", "ops": "ops/s", "watt": "W"}
    return EngFormatter(unit=suffix.get(unit, ""), sep=" ")


def draw(
    dashboard: dict[str, Any], scrapes: Sequence[Scrape], series: Series, output: Path
) -> None:
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    height = rows * UNIT + 0.9
    figure = plt.figure(figsize=(WIDTH, height), facecolor=BACKGROUND)
    figure.suptitle(
        f"{dashboard['title']}: the panels of deploy/grafana/inferd.json, computed from live "
        "inferd metrics by deploy/grafana/render_panels.py (not a Grafana screenshot)",
        color=TEXT, fontsize=11, x=0.01, ha="left", y=1 - 0.25 / height,
    )  # fmt: skip
    times = [t for t, _ in scrapes]
    for panel in panels:
        grid = panel["gridPos"]
        left, width = grid["x"] / 24 + 0.004, grid["w"] / 24 - 0.008
        top = 1 - (0.6 + grid["y"] * UNIT) / height
        box = (left, top - grid["h"] * UNIT / height, width, grid["h"] * UNIT / height)
        if panel["type"] == "row":
            figure.text(
                left, top - 0.15 / height, panel["title"], color=TEXT, fontsize=12, weight="bold"
            )
            continue
        inner = (
            box[0] + 0.035 * 12 / grid["w"],
            box[1] + 0.55 / height,
            box[2] - 0.045 * 12 / grid["w"],
            box[3] - 1.0 / height,
        )
        figure.add_artist(
            Rectangle(box[:2], box[2], box[3], transform=figure.transFigure, color=PANEL, zorder=-1)
        )
        figure.text(
            box[0] + 0.006,
            box[1] + box[3] - 0.28 / height,
            panel["title"],
            color=TEXT,
            fontsize=9.5,
        )
        axes = figure.add_axes(inner, facecolor=PANEL)
        _style(axes)
        lines = {}
        for target in panel.get("targets", []):
            lines.update(series(target["expr"], target.get("legendFormat", ""), scrapes))
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if not any(not math.isnan(v) for values in lines.values() for v in values):
            axes.set_axis_off()
            axes.text(
                0.5, 0.5, "No data", color=TEXT, ha="center", va="center", transform=axes.transAxes
            )
        elif panel["type"] == "heatmap":
            _heatmap(axes, times, lines)
        elif panel["type"] == "stat":
            _stat(axes, lines)
        else:
            for name, values in sorted(lines.items()):
                # Series that stay at 0 (most failure reasons) are drawn, not listed.
                zero = all(v == 0 or math.isnan(v) for v in values)
                axes.plot(times, values, label="_" + name if zero else name, linewidth=1.2)
            if unit not in (None, "short"):
                axes.yaxis.set_major_formatter(_formatter(unit))
            axes.set_ylim(bottom=0)
            axes.legend(fontsize=6.5, loc="upper left", frameon=False, labelcolor=TEXT, ncols=2)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=80, facecolor=BACKGROUND)
    plt.close(figure)


def _style(axes: Axes) -> None:
    axes.tick_params(colors=TEXT, labelsize=7)
    axes.grid(color=GRID, linewidth=0.5)
    for spine in axes.spines.values():
        spine.set_visible(False)
    axes.set_xlabel("seconds", color=TEXT, fontsize=7, labelpad=1)


def _heatmap(axes: Axes, times: list[float], lines: dict[str, list[float]]) -> None:
    """Rows per execution: the counts between each bound and the one below it (the buckets
    are cumulative), darker for more."""
    bounds = sorted(lines, key=float)
    cells = []
    below = [0.0] * len(times)
    for bound in bounds:
        values = [0.0 if math.isnan(v) else v for v in lines[bound]]
        cells.append([max(v - b, 0.0) for v, b in zip(values, below, strict=True)])
        below = values
    used = [index for index, row in enumerate(cells) if any(row)] or [0]
    shown = range(min(used), max(used) + 1)
    axes.imshow(
        [cells[i] for i in shown], aspect="auto", origin="lower", cmap="inferno",
        extent=(times[0], times[-1], -0.5, len(shown) - 0.5), interpolation="nearest",
    )  # fmt: skip
    axes.set_yticks(range(len(shown)), [f"≤{bounds[i]}" for i in shown])
    axes.grid(False)


def _stat(axes: Axes, lines: dict[str, list[float]]) -> None:
    axes.set_axis_off()
    items = [(name, values[-1]) for name, values in sorted(lines.items())]
    for index, (name, value) in enumerate(items):
        x = (index + 0.5) / len(items)
        axes.text(
            x,
            0.55,
            f"{value:.0f}",
            color="#f2495c" if value else "#73bf69",
            fontsize=26,
            ha="center",
            transform=axes.transAxes,
        )
        axes.text(x, 0.3, name, color=TEXT, fontsize=8, ha="center", transform=axes.transAxes)
