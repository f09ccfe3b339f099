"""What the user sees: a live progress bar per step (stderr) and a results table (stdout)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from inferd.bench.load import Tally
from inferd.bench.results import RunResult

_REFRESH_S = 0.1
# The client runs on one event loop, so one core is all it has.
_CLIENT_BOUND = 0.9


async def with_progress(
    step: Awaitable[None],
    tally: Tally,
    description: str,
    requests: int | None,
    duration_s: float | None,
    console: Console | None,
) -> None:
    """Await `step`, showing its progress on `console` (None: silently).

    The bar is fed by polling `tally` a few times a second, so the timed loop never pays for it.
    """
    if console is None:
        await step
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[done]} done  {task.fields[errors]} errors  {task.fields[rate]}/s"),
        TimeElapsedColumn(),
    )
    total = float(requests) if requests is not None else duration_s
    with Progress(*columns, console=console, refresh_per_second=5) as progress:
        bar = progress.add_task(description, total=total, done=0, errors=0, rate="0")
        running = asyncio.ensure_future(step)
        start = time.perf_counter()
        while not running.done():
            await asyncio.wait([running], timeout=_REFRESH_S)
            elapsed = time.perf_counter() - start
            completed = tally.done if requests is not None else min(elapsed, duration_s or 0.0)
            rate = f"{tally.done / elapsed:,.0f}" if elapsed > 0 else "0"
            progress.update(
                bar, completed=completed, done=tally.done, errors=tally.errors, rate=rate
            )
        await running


def results_table(run: RunResult) -> Table:
    return _stream_table(run) if run.streaming else _unary_table(run)


def _title(run: RunResult) -> tuple[str, Table]:
    load = "concurrency" if run.mode == "concurrency" else "rate (req/s)"
    return load, Table(title=f"{run.label}: batch size {run.batch_size}", title_justify="left")


def _unary_table(run: RunResult) -> Table:
    load, table = _title(run)
    for header in (load, "requests", "errors", "infer/s", "p50 ms", "p90 ms", "p95 ms"):
        table.add_column(header, justify="right")
    for header in ("p99 ms", "max ms", "queue µs", "compute µs", "batch", "client cpu"):
        table.add_column(header, justify="right")
    for step in run.steps:
        table.add_row(
            f"{step.load:g}",
            str(step.requests),
            str(step.errors),
            f"{step.throughput:,.1f}",
            *(_figure(value, 2) for value in (step.p50_ms, step.p90_ms, step.p95_ms)),
            *(_figure(value, 2) for value in (step.p99_ms, step.max_ms)),
            *(_figure(value, 0) for value in (step.server_queue_us, step.server_compute_us)),
            _figure(step.server_avg_batch, 2),
            f"{step.client_cpu:.0%}",
        )
    return table


def _stream_table(run: RunResult) -> Table:
    """Per step: how fast streams start (TTFT), how fast they flow, and how long they last."""
    load, table = _title(run)
    for header in (load, "requests", "errors", "responses", "req/s", "resp/s"):
        table.add_column(header, justify="right")
    for header in ("TTFT p50 ms", "TTFT p99 ms", "inter p50 ms", "inter p99 ms", "p99 ms"):
        table.add_column(header, justify="right")
    table.add_column("client cpu", justify="right")
    for step in run.steps:
        table.add_row(
            f"{step.load:g}",
            str(step.requests),
            str(step.errors),
            _figure(step.responses, 0),
            *(_figure(value, 1) for value in (step.requests_per_s, step.responses_per_s)),
            *(_figure(value, 2) for value in (step.ttft_p50_ms, step.ttft_p99_ms)),
            *(_figure(value, 2) for value in (step.inter_p50_ms, step.inter_p99_ms)),
            _figure(step.p99_ms, 2),
            f"{step.client_cpu:.0%}",
        )
    return table


def print_report(run: RunResult, console: Console) -> None:
    console.print(results_table(run))
    if not run.streaming and all(step.server_queue_us is None for step in run.steps):
        console.print("[dim]server statistics not available: queue/compute columns are empty[/]")
    if any(step.client_cpu > _CLIENT_BOUND for step in run.steps):
        console.print(
            "[yellow]the client kept a core busy: figures at that load measure inferd bench,"
            " not the server (see docs/bench.md)"
        )
    for step in run.steps:
        if step.errors:
            console.print(
                f"[red]load {step.load:g}: {step.errors} errors, first: {step.first_error}"
            )


def _figure(value: float | None, decimals: int) -> str:
    return "-" if value is None else f"{value:,.{decimals}f}"
