"""What OpenTelemetry spans cost per traced request, in process: the calls the frontend and
the engine make for a request traced at rate 1 (start, the batch's execution, finish,
responded), then the export of its spans over OTLP/HTTP to a receiver in another process that
drops them.

    python benchmarks/otel_spans.py [--requests 4000] [--batch 8] [--rounds 5] [--src DIR ...]

Each round runs in a fresh process per `--src` tree (default: this checkout's `src`; give two,
e.g. a checkout of main and this one, to compare them in alternating runs). Printed per round
and tree, in µs of the process's CPU (all threads) per request over a bare loop making the same
requests: the request path (`path`) and the export thread's encoding and sending (`export`),
timed apart; and `together`: both, with spans exported in batches of the default size while the
requests run (what a server pays). The best round (by `together`) of each tree is printed last.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def receive(port: multiprocessing.SimpleQueue[int]) -> None:
    """An OTLP/HTTP receiver that drops what it is sent; its port goes to `port`."""
    sys.path.insert(0, str(HERE))
    from otel_tracing import dropping_receiver

    with dropping_receiver() as address:
        port.put(int(address.rpartition(":")[2]))
        while True:
            time.sleep(60)


def measure(url: str, requests: int, batch: int) -> dict[str, float]:
    """µs of CPU per request over the bare loop: the traced request path and the export, apart
    (one export at the end) and together (batches of the default size as the path runs)."""
    from inferd.core.types import InferRequest, Timestamps
    from inferd.metrics.otel_config import open_tracing
    from inferd.metrics.triton_trace import TritonTracer

    start = {"trace_level": ["TIMESTAMPS"], "trace_rate": ["1"], "trace_mode": ["opentelemetry"]}
    tracer = TritonTracer(start, opentelemetry=True)
    queue = 16 * requests  # nothing dropped
    common = [f"opentelemetry,url={url}", f"opentelemetry,bsp_max_queue_size={queue}"]
    deferred = [
        f"opentelemetry,bsp_max_export_batch_size={queue}",
        "opentelemetry,bsp_schedule_delay=3600000",
    ]

    def run(tracing: Any) -> None:
        for first in range(0, requests, batch):
            calls = []
            for i in range(first, first + batch):
                now = time.monotonic_ns()
                request = InferRequest(model_name="mlp", inputs={}, id=str(i))
                request.timestamps = Timestamps(received=now, queued=now + 1000)
                if tracing:
                    tracing.start(request, True)
                calls.append(request)
            compute = Timestamps(0, 0, now + 5000, now + 6000, now + 20000, now + 21000)
            if tracing:
                tracing.batch_executed("mlp", "1", batch, compute, "mlp_0", calls)
            for request in calls:
                request.timestamps.copy_compute(compute)
                request.timestamps.sent = now + 25000
                if tracing:
                    tracing.finish(request, "1", None)
                    assert request.span is not None
                    request.span.responded()

    def cpu(call: Callable[[], object]) -> float:
        began = time.process_time()
        call()
        return time.process_time() - began

    tracing, export = open_tracing(common + deferred, tracer)
    run(tracing)  # warm-up (exported with the rest)
    bare = cpu(lambda: run(None))
    path = cpu(lambda: run(tracing))
    exported = cpu(export.shutdown) / 2  # the warm-up's spans and the measured ones
    tracing, export = open_tracing(common, tracer)
    together = cpu(lambda: (run(tracing), export.shutdown()))
    per = 1e6 / requests
    return {"path": (path - bare) * per, "export": exported * per, "total": (together - bare) * per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=8, help="requests per batch execution")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--src", action="append", help="a source tree to import inferd from")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # a round's process: the url
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.requests, args.batch)))
        return
    trees = args.src or [str(HERE.parent / "src")]
    ports: multiprocessing.SimpleQueue[int] = multiprocessing.SimpleQueue()
    receiver = multiprocessing.Process(target=receive, args=(ports,), daemon=True)
    receiver.start()
    url = f"127.0.0.1:{ports.get()}/v1/traces"
    best: dict[str, dict[str, float]] = {}
    print(f"{'round':>5} {'path µs':>8} {'export µs':>10} {'together µs':>12}  src")
    try:
        for round_ in range(args.rounds):
            for tree in trees:
                command = [sys.executable, __file__, "--measure", url]
                command += ["--requests", str(args.requests), "--batch", str(args.batch)]
                env = {**os.environ, "PYTHONPATH": tree}
                out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
                figures = json.loads(out.stdout.splitlines()[-1])
                print(
                    f"{round_:>5} {figures['path']:>8.1f} {figures['export']:>10.1f} "
                    f"{figures['total']:>12.1f}  {tree}"
                )
                if tree not in best or figures["total"] < best[tree]["total"]:
                    best[tree] = figures
    finally:
        receiver.terminate()
    for tree, figures in best.items():
        path, export, total = figures["path"], figures["export"], figures["total"]
        print(f"best: path {path:.1f} export {export:.1f} together {total:.1f} µs  {tree}")


if __name__ == "__main__":
    main()
