"""Per-step figures of a run, and the CSV / JSON files that keep them.

The JSON file is also what `--compare` reads back, so earlier runs can share a plot.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from inferd.bench.load import Tally
from inferd.bench.stats import ServerSplit
from inferd.core.errors import InvalidArgument

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True, slots=True)
class StepResult:
    load: float  # concurrent requests, or target requests/s (see RunResult.mode)
    requests: int  # successful requests
    errors: int
    duration_s: float
    throughput: float  # inferences/s: successful requests x batch size / duration
    avg_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    send_rate: float  # requests/s the client actually sent (below target: client-bound)
    client_cpu: float  # cores this client kept busy; near 1.0 it, not the server, is the limit
    server_queue_us: float | None = None
    server_compute_us: float | None = None
    server_compute_infer_us: float | None = None
    server_avg_batch: float | None = None
    first_error: str = ""


@dataclass(slots=True)
class RunResult:
    label: str
    model: str
    url: str
    protocol: str
    mode: str
    batch_size: int
    steps: list[StepResult] = field(default_factory=list)

    @property
    def failed_everything(self) -> bool:
        return bool(self.steps) and all(step.requests == 0 for step in self.steps)


def summarize_step(
    load: float, tally: Tally, batch_size: int, server: ServerSplit | None
) -> StepResult:
    ms = np.asarray(tally.latencies_ns, dtype=np.float64) / 1e6
    duration_s = tally.elapsed_s
    percentiles: list[float | None] = [None] * len(PERCENTILES)
    if ms.size:
        percentiles = [float(value) for value in np.percentile(ms, PERCENTILES)]
    p50, p90, p95, p99 = percentiles
    return StepResult(
        load=load,
        requests=int(ms.size),
        errors=tally.errors,
        duration_s=duration_s,
        throughput=ms.size * batch_size / duration_s if duration_s > 0 else 0.0,
        avg_ms=float(ms.mean()) if ms.size else None,
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=float(ms.max()) if ms.size else None,
        send_rate=tally.sent / duration_s if duration_s > 0 else 0.0,
        client_cpu=tally.cpu_s / duration_s if duration_s > 0 else 0.0,
        server_queue_us=server.queue_us if server else None,
        server_compute_us=server.compute_us if server else None,
        server_compute_infer_us=server.compute_infer_us if server else None,
        server_avg_batch=server.avg_batch if server else None,
        first_error=tally.first_error,
    )


def write_csv(run: RunResult, path: Path) -> None:
    """One row per step, prefixed with the run's label, protocol, mode and batch size."""
    prefix = {"label": run.label, "protocol": run.protocol, "mode": run.mode}
    prefix["batch_size"] = str(run.batch_size)
    columns = [*prefix, *(item.name for item in fields(StepResult))]
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        for step in run.steps:
            row = {key: "" if value is None else value for key, value in asdict(step).items()}
            writer.writerow({**prefix, **row})


def write_json(run: RunResult, path: Path) -> None:
    path.write_text(json.dumps(asdict(run), indent=2) + "\n")


def read_json(path: Path) -> RunResult:
    """A run written by `write_json`, for `--compare`."""
    try:
        document: dict[str, Any] = json.loads(path.read_text())
        steps = [StepResult(**step) for step in document.pop("steps")]
        return RunResult(**document, steps=steps)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(
            f"--compare {path}: not an `inferd bench --json` file ({error})"
        ) from None
