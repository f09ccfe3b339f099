"""The load generators of benchmarks/peers.py and the check of every server's answer.

- Triton's `perf_analyzer` (C++) for every V2 server (inferd, Triton, MLServer) over each of
  HTTP binary, HTTP JSON and gRPC that the server takes (MLServer takes no binary tensors).
- A plain-HTTP closed loop (one process per concurrent client, stdlib http.client, the V2 JSON
  body) for every server, including Ray Serve, which speaks no V2.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from common import load_from_processes
from peer_servers import Server, infer_body
from perf_analyzer_run import TRANSPORTS as PERF_ANALYZER_TRANSPORTS
from perf_analyzer_run import run_perf_analyzer

PLAIN = "HTTP JSON (plain client)"


@dataclass(frozen=True)
class Sample:
    throughput: float  # inferences per second
    p50_ms: float
    p99_ms: float
    server_cpu: float  # cores the server's process tree kept busy during the run


def perf_analyzer(
    server: Server, transport: str, concurrency: int, window_ms: int, client_cpus: str
) -> Sample | str:
    """One perf_analyzer run, or its last words where it cannot drive `server`."""
    protocol, extra = PERF_ANALYZER_TRANSPORTS[transport]
    url = server.grpc if protocol == "grpc" else server.http
    # perf_analyzer measures at least three windows; the CPU is read over the first two.
    with cpu_share(server, after_s=0.5, length_s=2 * window_ms / 1000) as busy:
        row = run_perf_analyzer(str(url), protocol, extra, concurrency, window_ms, client_cpus)
    if isinstance(row, str):
        return row
    return Sample(
        float(row["Inferences/Second"]),
        float(row["p50 latency"]) / 1000,
        float(row["p99 latency"]) / 1000,
        busy[0],
    )


@contextmanager
def cpu_share(server: Server, after_s: float, length_s: float) -> Iterator[list[float]]:
    """The cores `server` kept busy from `after_s` into the block for `length_s` (steady load,
    past the clients' start-up), in the list given once the block ends."""
    share: list[float] = []

    def measure() -> None:
        time.sleep(after_s)
        cpu, wall = server.cpu_seconds(), time.perf_counter()
        time.sleep(length_s)
        share.append((server.cpu_seconds() - cpu) / (time.perf_counter() - wall))

    sampler = threading.Thread(target=measure, daemon=True)
    sampler.start()
    yield share
    sampler.join()


def plain_http(server: Server, concurrency: int, seconds: float) -> Sample:
    """Closed loop from `concurrency` client processes, each posting the V2 JSON body of one
    row to /v2/models/mlp/infer on a kept-alive connection and reading the whole answer."""
    host, port = server.http.rsplit(":", 1)

    def make_call() -> Callable[[], object]:
        connection = http.client.HTTPConnection(host, int(port))
        body = infer_body(np.random.default_rng(os.getpid()).standard_normal(256).tolist())
        headers = {"Content-Type": "application/json"}

        def call() -> bytes:
            connection.request("POST", "/v2/models/mlp/infer", body, headers)
            answer = connection.getresponse()
            data = answer.read()
            if answer.status != 200:
                raise RuntimeError(f"{server.name} answered {answer.status}: {data[:200]!r}")
            return data

        return call

    # The clients start together 2 s after they are forked (common.load_from_processes).
    with cpu_share(server, after_s=2.5, length_s=0.8 * seconds) as busy:
        figures = load_from_processes(make_call, concurrency, seconds, server.name)
    return Sample(figures.throughput, figures.percentile(50), figures.percentile(99), busy[0])
