"""One `inferd bench` run: connect, build the requests once, visit each load step, report."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from rich.console import Console

from inferd.bench.inputs import build_requests
from inferd.bench.load import Budget, Send, Tally, run_step, streamed, unary
from inferd.bench.options import BenchOptions
from inferd.bench.plot import plot_runs
from inferd.bench.report import print_report, with_progress
from inferd.bench.results import RunResult, read_json, summarize_step, write_csv, write_json
from inferd.bench.stats import ServerCounters, read_counters, split
from inferd.bench.transport import Transport, open_stream_transport, open_transport
from inferd.core.errors import InvalidArgument

_FILE_WIDTH = 160


def run_bench(options: BenchOptions) -> int:
    """Run the benchmark and write its outputs; 1 when every request failed, else 0.

    Raises `InferdError` for a run that cannot start (unknown model, bad shape, no server).
    """
    earlier = [read_json(path) for path in options.compare]  # fail before the long part
    if any(run.streaming != options.streaming for run in earlier):
        raise InvalidArgument(
            "--compare mixes runs with and without --streaming: their plots measure different"
            " things (time to first response vs full latency)"
        )
    progress = Console(stderr=True) if options.progress else None
    run = _run_async(_bench(options, progress))
    print_report(run, _stdout_console())
    if options.csv:
        write_csv(run, options.csv)
    if options.json:
        write_json(run, options.json)
    if options.plot:
        plot_runs([*earlier, run], options.plot)
    if run.failed_everything:
        first = next(step.first_error for step in run.steps if step.first_error)
        Console(stderr=True).print(f"[red]every request failed; the first error: {first}")
        return 1
    return 0


def _stdout_console() -> Console:
    """The report's console; wide enough for the whole table when written to a file or pipe."""
    console = Console()
    return console if console.is_terminal else Console(width=_FILE_WIDTH)


def _run_async(work: Coroutine[Any, Any, RunResult]) -> RunResult:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    return uvloop.run(work)


async def _bench(options: BenchOptions, progress: Console | None) -> RunResult:
    mode = options.steps.mode
    # A rate step may have any number of requests in flight; a concurrency step at most N.
    connections = int(max(options.steps.values)) if mode == "concurrency" else 0
    transport: Transport
    send: Send
    where = (options.protocol, options.url, options.model, options.model_version, connections)
    if options.streaming:
        transport = stream_transport = open_stream_transport(options, connections)
        send = streamed(stream_transport)
    else:
        transport = open_transport(*where)
        send = unary(transport)
    try:
        info = await transport.model_info()
        if info.decoupled and not options.streaming:
            raise InvalidArgument(
                f"model '{info.name}' is decoupled (it streams its responses): add --streaming"
            )
        # The OpenAI routes take a prompt, not the model's tensors.
        requests = (
            [{}]
            if options.protocol == "openai"
            else build_requests(info, options.batch_size, options.shapes, options.input_data)
        )
        prepared = [transport.prepare(request) for request in requests]
        has_stats = read_counters(await transport.statistics()) is not None
        run = RunResult(
            options.run_label, options.model, options.url, options.protocol, mode,
            options.batch_size, streaming=options.streaming,
        )  # fmt: skip
        for load in options.steps.values:
            tally = Tally()
            before = await _counters(transport, has_stats)
            step = run_step(
                send, prepared, mode, load, Budget(options.requests, options.duration_s), tally
            )
            description = f"{'concurrency' if mode == 'concurrency' else 'rate'} {load:g}"
            await with_progress(
                step, tally, description, options.requests, options.duration_s, progress
            )
            server = split(before, await _counters(transport, has_stats))
            run.steps.append(
                summarize_step(load, tally, options.batch_size, server, options.streaming)
            )
            if tally.errors and not tally.latencies_ns:
                break  # nothing works: more load will not help, and the report says why
        return run
    finally:
        await transport.close()


async def _counters(transport: Transport, has_stats: bool) -> ServerCounters | None:
    return read_counters(await transport.statistics()) if has_stats else None
