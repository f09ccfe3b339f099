"""What serving over HTTP costs: the example MLP at batch 1 through inferd vs raw ONNX Runtime.

    python benchmarks/http_overhead.py [--seconds 5] [--concurrency 1 8]

Prints requests/s and p50/p99 latency for batch-1 requests with tritonclient.http (binary data)
at each concurrency, next to raw in-process onnxruntime calls of the same model in the same
run, and the ratio (served throughput / raw throughput). Client workers are processes, so the
client's GIL does not cap the figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from common import HEADER, Figures, served, time_calls, write_mlp_repository

CONFIG = """
max_batch_size: 8
instance_group [ { count: 1, kind: KIND_CPU } ]
parameters { key: "intra_op_thread_count" value { string_value: "1" } }
"""


def raw_onnxruntime(model_file: Path, seconds: float) -> Figures:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
    return time_calls(
        "raw onnxruntime, batch 1", lambda: session.run(["output"], {"input": x}), seconds
    )


def _client_worker(url: str, seconds: float, start_at: float, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    x = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
    item = httpclient.InferInput("input", [1, 256], "FP32")
    item.set_data_from_numpy(x, binary_data=True)
    output = httpclient.InferRequestedOutput("output", binary_data=True)
    for _ in range(20):
        client.infer("mlp", [item], outputs=[output])
    while time.time() < start_at:
        time.sleep(0.001)
    figures = time_calls(
        "", lambda: client.infer("mlp", [item], outputs=[output]), seconds, warmup=0
    )
    queue.put((figures.requests, figures.seconds, figures.latencies_ms))


def served_http(url: str, concurrency: int, seconds: float) -> Figures:
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 1.0
    workers = [
        multiprocessing.Process(target=_client_worker, args=(url, seconds, start_at, queue))
        for _ in range(concurrency)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    latencies = [value for result in results for value in result[2]]
    elapsed = max(result[1] for result in results)
    requests = sum(result[0] for result in results)
    return Figures(f"inferd HTTP binary, concurrency {concurrency}", requests, elapsed, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model_file = write_mlp_repository(Path(folder), CONFIG)
        with served(Path(folder)) as server:
            rows = [served_http(server.http_url, c, args.seconds) for c in args.concurrency]
        raw = raw_onnxruntime(model_file, args.seconds)
    print(HEADER)
    print(raw.row(raw))
    for row in rows:
        print(row.row(raw))
    print(
        f"\nadded latency at concurrency {rows[0].label.split()[-1]}: "
        f"p50 {rows[0].percentile(50) - raw.percentile(50):.3f} ms over raw onnxruntime"
    )


if __name__ == "__main__":
    main()
