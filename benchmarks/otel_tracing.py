"""What OpenTelemetry tracing costs, within one server: the server of `benchmarks/batching.py
--mode target` (the example MLP, dynamic batching with a 0.5 ms delay, one instance, 32
concurrent tritonclient clients) started in `opentelemetry` mode, exporting over OTLP/HTTP to a
receiver in this process that takes and drops the spans, under the same closed-loop load
throughout while tracing is switched off and on (every request, rate 1) at run time through
the trace settings API, in alternating windows.

    python benchmarks/otel_tracing.py [--windows 30] [--seconds 1] [--protocol http|grpc]

Comparing one process with itself takes out what moved two servers apart (their start, where
the allocator and the kernel placed them, the machine's load in between: +-15 % on a shared
machine); alternating short windows spreads the load the machine sees over both halves.
With tracing off the server still has its OpenTelemetry export idle (one attribute check per
request). With two CPUs or more the server runs on cpu 0 and the clients elsewhere.

Printed, never asserted: per window samples/s and the server's CPU µs per answered sample;
the medians and ranges of each half; and the cost of tracing per adjacent pair of windows
(each window against the next), per server CPU-second (the steadier figure) and in samples/s.
The issue's target is a cost of at most 10 % at 100 % sampling.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from batching import (  # it puts the checkout on sys.path for its server helper
    DYNAMIC,
    Result,
    Setup,
    load,
    load_grpc,
    pinned,
    running_server,
    write_repository,
)

LEVELS = {False: "OFF", True: "TIMESTAMPS"}


@contextmanager
def dropping_receiver() -> Iterator[str]:
    """host:port of an OTLP/HTTP endpoint that answers every export and keeps nothing."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # connections kept open, as a collector's are

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Window:
    traced: bool
    throughput: float  # samples/s
    cpu_us: float  # server CPU µs per answered sample


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's threads now running, to the ns (`/proc/<pid>/stat` counts in
    clock ticks of 10 ms: 1-2 % of a short window's CPU)."""
    total = 0
    for thread in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{thread}/schedstat").read_text().split()[0])
        except FileNotFoundError:  # it ended meanwhile
            continue
    return total / 1e9


def switch(http_url: str, traced: bool) -> None:
    """Tracing on (every request) or off, through Triton's trace settings API."""
    body = json.dumps({"trace_level": [LEVELS[traced]], "trace_rate": "1"}).encode()
    request = urllib.request.Request(f"http://{http_url}/v2/trace/setting", body, method="POST")
    with urllib.request.urlopen(request) as answer:
        level = json.load(answer)["trace_level"]
    if level != [LEVELS[traced]]:
        raise RuntimeError(f"the server says trace_level {level}")


def windows(
    run_load: Callable[[str, int, float, str], Result],
    url: str,
    http_url: str,
    pid: int,
    args: argparse.Namespace,
) -> list[Window]:
    measured = []
    for index in range(args.windows):
        traced = index % 2 == 1
        switch(http_url, traced)
        run_load(url, args.concurrency, args.settle, "settle")  # the new state's steady load
        before = cpu_seconds(pid)
        result = run_load(url, args.concurrency, args.seconds, LEVELS[traced])
        used = cpu_seconds(pid) - before
        samples = result.throughput * args.seconds
        if not samples:
            print(f"{index:>6} {'on' if traced else 'off':>7}: nothing answered, left out")
            continue
        window = Window(traced, result.throughput, used / samples * 1e6)
        measured.append(window)
        print(
            f"{index:>6} {'on' if traced else 'off':>7} {window.throughput:>10.0f} "
            f"{window.cpu_us:>10.0f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f}",
            flush=True,
        )
    return measured


def report(measured: list[Window]) -> None:
    for traced in (False, True):
        half = [w for w in measured if w.traced == traced]
        rates, cpu = [w.throughput for w in half], [w.cpu_us for w in half]
        print(
            f"tracing {'on ' if traced else 'off'}: samples/s median "
            f"{statistics.median(rates):.0f} "
            f"({min(rates):.0f}-{max(rates):.0f}), CPU µs/sample median "
            f"{statistics.median(cpu):.0f} ({min(cpu):.0f}-{max(cpu):.0f})"
        )
    off_cpu = statistics.median(w.cpu_us for w in measured if not w.traced)
    on_cpu = statistics.median(w.cpu_us for w in measured if w.traced)
    cost = 1 - off_cpu / on_cpu
    print(f"cost of tracing every request, per server CPU-s, of the medians: {cost:.1%}")
    per_cpu, per_second = [], []
    for a, b in itertools.pairwise(measured):
        if a.traced == b.traced:  # a window between them was left out
            continue
        off, on = (a, b) if b.traced else (b, a)
        per_cpu.append(1 - off.cpu_us / on.cpu_us)  # 1 - (samples per CPU-s on / off)
        per_second.append(1 - on.throughput / off.throughput)
    for label, costs in (("per server CPU-s", per_cpu), ("samples/s", per_second)):
        listed = ", ".join(f"{c:.1%}" for c in costs)
        print(
            f"cost of tracing every request, {label}, per adjacent pair: median "
            f"{statistics.median(costs):.1%} ({min(costs):.1%} to {max(costs):.1%}): {listed}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=30, help="alternating, off first")
    parser.add_argument("--seconds", type=float, default=1.0, help="measured time per window")
    parser.add_argument("--settle", type=float, default=0.2, help="unmeasured load per switch")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.windows < 2:
        parser.error("--windows: at least 2 (one off, one on)")
    cpus = {0} if len(os.sched_getaffinity(0)) >= 2 else None
    client_cpus = None if cpus is None else set(os.sched_getaffinity(0)) - cpus
    with ExitStack() as stack:
        receiver = stack.enter_context(dropping_receiver())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        flags = ("mode=opentelemetry", "level=TIMESTAMPS", "rate=1",
                 f"opentelemetry,url={receiver}/v1/traces")  # fmt: skip
        repository = write_repository(folder, Setup("otel", 1, DYNAMIC), max_batch_size=32)
        with pinned(cpus):  # the server process inherits the pinning
            running = stack.enter_context(
                running_server(repository, *(f"--trace-config={f}" for f in flags))
            )
        grpc = args.protocol == "grpc"
        url = running.grpc_url if grpc else running.http_url
        run_load = load_grpc if grpc else load
        with pinned(client_cpus or None):
            run_load(url, args.concurrency, 1.0, "warm-up")
            print(f"{'window':>6} {'tracing':>7} {'samples/s':>10} {'cpu µs':>10} "
                  f"{'p50 ms':>8} {'p99 ms':>8}")  # fmt: skip
            measured = windows(run_load, url, running.http_url, running.process.pid, args)
    report(measured)


if __name__ == "__main__":
    main()
