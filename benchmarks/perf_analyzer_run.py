"""One run of Triton's `perf_analyzer` (the C++ load generator) on the example MLP, for the
benchmarks that drive V2 servers with it."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import ROOT

# (perf_analyzer protocol, its arguments) of each transport it measures.
TRANSPORTS = {
    "HTTP binary": ("http", []),
    "HTTP JSON": ("http", ["--input-tensor-format", "json", "--output-tensor-format", "json"]),
    "gRPC": ("grpc", []),
}
# $PERF_ANALYZER, else on PATH, else the wrapper in the shared tools folder beside the checkout
# (or beside the worktrees' folder).
PERF_ANALYZER = (
    os.environ.get("PERF_ANALYZER")
    or shutil.which("perf_analyzer")
    or next(
        (
            str(path)
            for base in (ROOT.parent, ROOT.parent.parent)
            if (path := base / "shared" / "tools" / "perf_analyzer").exists()
        ),
        "perf_analyzer",
    )
)


# The key a row gains where perf_analyzer could not get stable windows (see run_perf_analyzer).
UNSTABLE = "unstable"


def run_perf_analyzer(
    url: str, protocol: str, extra: list[str], concurrency: int, window_ms: int, client_cpus: str
) -> dict[str, str] | str:
    """perf_analyzer's CSV row (batch 1, `concurrency` in flight, from `client_cpus`), or its
    last words where it could not measure.

    Where no 6 windows in a row agreed within 25 %, the figures of 3 windows whatever they gave
    are taken instead, and the row's UNSTABLE key says so: a latency tail that moves the
    throughput between windows is a finding to print, not a reason to print nothing."""
    row = _measure(url, protocol, extra, concurrency, window_ms, client_cpus, ["25", "6"])
    if isinstance(row, str) and "stable measurement" in row:
        row = _measure(url, protocol, extra, concurrency, window_ms, client_cpus, ["100", "3"])
        if isinstance(row, dict):
            row[UNSTABLE] = "yes"
    return row


def _measure(
    url: str,
    protocol: str,
    extra: list[str],
    concurrency: int,
    window_ms: int,
    client_cpus: str,
    stability: list[str],
) -> dict[str, str] | str:
    with tempfile.NamedTemporaryFile(suffix=".csv") as report:
        command = [
            "taskset", "-c", client_cpus, PERF_ANALYZER,
            "-m", "mlp", "-u", url, "-i", protocol, "-b", "1",
            "--concurrency-range", str(concurrency),
            "--measurement-interval", str(window_ms),
            "--stability-percentage", stability[0], "--max-trials", stability[1],
            "-f", report.name, *extra,
        ]  # fmt: skip
        finished = subprocess.run(command, capture_output=True, text=True)
        rows = list(csv.DictReader(Path(report.name).read_text().splitlines()))
    if not rows:
        return " ".join((finished.stdout + finished.stderr).strip().splitlines()[-2:])[:300]
    return rows[0]
