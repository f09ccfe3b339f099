"""Per-step figures of a run, and the CSV / JSON files that keep them.

The JSON file is also what `--compare` reads back, so earlier runs can share a plot. The
streaming figures (responses, time to first response, time between responses) are None for a
run without `--streaming`, and absent from files written before they existed.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

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
    requests_per_s: float | None = None  # successful requests / duration (batch size aside)
    responses: int | None = None  # streams: responses of the successful requests
    responses_per_s: float | None = None
    ttft_p50_ms: float | None = None  # streams: send to first response
    ttft_p99_ms: float | None = None
    inter_p50_ms: float | None = None  # streams: between consecutive responses of a request
    inter_p99_ms: float | None = None


@dataclass(slots=True)
class RunResult:
    label: str
    model: str
    url: str
    protocol: str
    mode: str
    batch_size: int
    steps: list[StepResult] = field(default_factory=list)
    streaming: bool = False

    @property
    def failed_everything(self) -> bool:
        return bool(self.steps) and all(step.requests == 0 for step in self.steps)


def summarize_step(
    load: float, tally: Tally, batch_size: int, server: ServerSplit | None, streaming: bool
) -> StepResult:
    ms = _ms(tally.latencies_ns)
    duration_s = tally.elapsed_s
    p50, p90, p95, p99 = _percentiles(ms, PERCENTILES)
    streams: dict[str, Any] = {}
    if streaming:
        ttft_p50, ttft_p99 = _percentiles(_ms(tally.ttft_ns), (50, 99))
        inter_p50, inter_p99 = _percentiles(_ms(tally.gaps_ns), (50, 99))
        streams = {
            "responses": tally.responses,
            "responses_per_s": _rate(tally.responses, duration_s),
            "ttft_p50_ms": ttft_p50,
            "ttft_p99_ms": ttft_p99,
            "inter_p50_ms": inter_p50,
            "inter_p99_ms": inter_p99,
        }
    return StepResult(
        load=load,
        requests=int(ms.size),
        errors=tally.errors,
        duration_s=duration_s,
        throughput=_rate(ms.size * batch_size, duration_s),
        avg_ms=float(ms.mean()) if ms.size else None,
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=float(ms.max()) if ms.size else None,
        send_rate=_rate(tally.sent, duration_s),
        client_cpu=_rate(tally.cpu_s, duration_s),
        server_queue_us=server.queue_us if server else None,
        server_compute_us=server.compute_us if server else None,
        server_compute_infer_us=server.compute_infer_us if server else None,
        server_avg_batch=server.avg_batch if server else None,
        first_error=tally.first_error,
        requests_per_s=_rate(ms.size, duration_s),
        **streams,
    )


def _ms(nanoseconds: list[int]) -> npt.NDArray[np.float64]:
    return np.asarray(nanoseconds, dtype=np.float64) / 1e6


def _percentiles(ms: npt.NDArray[np.float64], which: tuple[int, ...]) -> list[float | None]:
    """The percentiles `which` of `ms`; None each when there is nothing to rank."""
    if not ms.size:
        return [None] * len(which)
    return [float(value) for value in np.percentile(ms, which)]


def _rate(count: float, duration_s: float) -> float:
    return count / duration_s if duration_s > 0 else 0.0


def write_csv(run: RunResult, path: Path) -> None:
    """One row per step, prefixed with the run's label, protocol, mode, batch size, streaming."""
    prefix = {"label": run.label, "protocol": run.protocol, "mode": run.mode}
    prefix["batch_size"] = str(run.batch_size)
    prefix["streaming"] = str(run.streaming)
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
