"""What OpenTelemetry tracing costs: the server of `benchmarks/batching.py --mode target`
(the example MLP, dynamic batching with a 0.5 ms delay, one instance, 32 concurrent
tritonclient clients) with tracing off, and in `opentelemetry` mode tracing every request
(rate 1) exported over OTLP/HTTP to a receiver in this process that takes and drops the spans.

    python benchmarks/otel_tracing.py [--seconds 10] [--protocol http|grpc]

With two CPUs or more the server runs on cpu 0 and the clients elsewhere. Figures are
printed, never asserted: samples/s, and samples per CPU-second of the server (the steadier
figure on a shared machine); the issue's target is a cost of at most 10 % at 100 % sampling.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from batching import DYNAMIC, Result, Setup, serve_and_load


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per setup")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    cpus = {0} if len(os.sched_getaffinity(0)) >= 2 else None
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as folder, dropping_receiver() as receiver:
        traced = [
            f"--trace-config={flag}"
            for flag in (
                "mode=opentelemetry",
                "level=TIMESTAMPS",
                "rate=1",
                f"opentelemetry,url={receiver}/v1/traces",
            )
        ]
        for label, server_args in (("tracing off", ()), ("opentelemetry, rate 1", traced)):
            setup = Setup(f"{args.protocol}: {label}", 1, DYNAMIC)
            result = serve_and_load(
                Path(folder), setup, args.concurrency, args.seconds, cpus, args.protocol,
                tuple(server_args),
            )  # fmt: skip
            results.append(result)
    print(f"{'setup':<36} {'samples/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'per cpu-s':>10}")
    for r in results:
        print(
            f"{r.label:<36} {r.throughput:>10.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
            f"{r.per_cpu_second:>10.0f}"
        )
    off, on = results
    print(
        f"cost of tracing every request: {1 - on.throughput / off.throughput:.1%} samples/s, "
        f"{1 - on.per_cpu_second / off.per_cpu_second:.1%} per cpu-s"
    )


if __name__ == "__main__":
    main()
