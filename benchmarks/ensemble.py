"""An ensemble vs the same models called one by one from the client, under the same load.

    python benchmarks/ensemble.py [--seconds 5] [--concurrency 1 8] [--queue-delay-us 500]

Serves `onnx_pipeline` (examples/generate_models.py: pre -> {mlp_a, mlp_b} -> post, all
ONNX, batch 1 requests) over gRPC. "ensemble" sends one request per pipeline run; "client
chain" sends the four step requests itself, in sequence, feeding each answer to the next.
Client workers are processes (the client's GIL does not cap the figures). The last column is
the ensemble's throughput over the client chain's at the same concurrency.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from common import HEADER, Figures, generate_models, load_from_processes, served


def _infer(client: Any, model: str, name: str, array: np.ndarray, outputs: list[str]) -> Any:
    import tritonclient.grpc as grpcclient

    item = grpcclient.InferInput(name, list(array.shape), "FP32")
    item.set_data_from_numpy(array)
    wanted = [grpcclient.InferRequestedOutput(o) for o in outputs]
    return client.infer(model, [item], outputs=wanted)


def _pipeline_call(client: Any, mode: str, x: np.ndarray) -> Callable[[], object]:
    def ensemble() -> object:
        return _infer(client, "onnx_pipeline", "IN", x, ["SUM", "DIFF"])

    def chain() -> object:
        import tritonclient.grpc as grpcclient

        features = _infer(client, "pre", "INPUT0", x, ["OUTPUT0"]).as_numpy("OUTPUT0")
        a = _infer(client, "mlp_a", "input", features, ["output"]).as_numpy("output")
        b = _infer(client, "mlp_b", "input", features, ["output"]).as_numpy("output")
        inputs = []
        for name, array in (("INPUT0", a), ("INPUT1", b)):
            item = grpcclient.InferInput(name, list(array.shape), "FP32")
            item.set_data_from_numpy(array)
            inputs.append(item)
        return client.infer("post", inputs)

    return ensemble if mode == "ensemble" else chain


def _client(mode: str, url: str) -> Callable[[], Callable[[], object]]:
    def make_call() -> Callable[[], object]:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(url)
        x = np.random.default_rng(0).standard_normal((1, generate_models.PIPELINE_WIDTH))
        return _pipeline_call(client, mode, x.astype(np.float32))

    return make_call


def measure(mode: str, url: str, concurrency: int, seconds: float) -> Figures:
    label = "ensemble" if mode == "ensemble" else "client chain (4 calls)"
    return load_from_processes(
        _client(mode, url), concurrency, seconds, f"{label}, concurrency {concurrency}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--queue-delay-us", type=int, default=500)
    args = parser.parse_args()
    rows: list[tuple[Figures, Figures]] = []
    with tempfile.TemporaryDirectory() as folder:
        generate_models.write_onnx_pipeline(Path(folder), args.queue_delay_us)
        with served(Path(folder)) as server:
            for concurrency in args.concurrency:
                chain = measure("chain", server.grpc_url, concurrency, args.seconds)
                ensemble = measure("ensemble", server.grpc_url, concurrency, args.seconds)
                rows.append((chain, ensemble))
    print(HEADER.replace("vs raw", "vs chain"))
    for chain, ensemble in rows:
        print(chain.row(chain))
        print(ensemble.row(chain))


if __name__ == "__main__":
    main()
