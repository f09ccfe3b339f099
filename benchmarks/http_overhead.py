"""What serving costs: the example MLP at batch 1 via inferd (HTTP and gRPC) vs raw ONNX Runtime.

    python benchmarks/http_overhead.py [--seconds 5] [--concurrency 1 8 32] [--protocol http grpc]

Prints requests/s and p50/p99 latency for batch-1 requests with tritonclient.http (binary data)
and tritonclient.grpc at each concurrency, next to raw in-process onnxruntime calls of the same
model in the same run, and the ratio (served throughput / raw throughput). The model runs
without batching (one instance, intra-op threads 1), so the ratio shows the per-request cost
of the server. Client workers are processes, so the client's GIL does not cap the figures.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from common import HEADER, Figures, load_from_processes, time_calls, write_mlp_repository
from common import served as serving

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


def _client(protocol: str, url: str) -> Callable[[], Callable[[], object]]:
    def make_call() -> Callable[[], object]:
        if protocol == "grpc":
            import tritonclient.grpc as client_module
        else:
            import tritonclient.http as client_module  # type: ignore[no-redef]

        client = client_module.InferenceServerClient(url)
        x = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
        item = client_module.InferInput("input", [1, 256], "FP32")
        output = client_module.InferRequestedOutput("output")
        if protocol == "http":
            item.set_data_from_numpy(x, binary_data=True)
            output = client_module.InferRequestedOutput("output", binary_data=True)
        else:
            item.set_data_from_numpy(x)
        return lambda: client.infer("mlp", [item], outputs=[output])

    return make_call


def served(protocol: str, url: str, concurrency: int, seconds: float) -> Figures:
    label = "HTTP binary" if protocol == "http" else "gRPC"
    return load_from_processes(
        _client(protocol, url), concurrency, seconds, f"inferd {label}, concurrency {concurrency}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--protocol", nargs="+", choices=["http", "grpc"], default=["http", "grpc"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model_file = write_mlp_repository(Path(folder), CONFIG)
        with serving(Path(folder)) as server:
            urls = {"http": server.http_url, "grpc": server.grpc_url}
            rows = [
                served(protocol, urls[protocol], c, args.seconds)
                for protocol in args.protocol
                for c in args.concurrency
            ]
        raw = raw_onnxruntime(model_file, args.seconds)
    print(HEADER)
    print(raw.row(raw))
    for row in rows:
        print(row.row(raw))
    for row in rows:
        if row.label.endswith("concurrency 1"):
            added = row.percentile(50) - raw.percentile(50)
            print(f"{row.label}: p50 {added:.3f} ms above raw onnxruntime")


if __name__ == "__main__":
    main()
