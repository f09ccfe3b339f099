"""Ray Serve: one deployment calling ONNX Runtime behind Serve's HTTP proxy. Ray Serve has no V2
protocol, so the deployment takes and returns the V2 JSON body at /v2/models/mlp/infer (what the
plain-HTTP client sends every server), parsed with the standard json module.

    python rayserve_app.py MODEL --port P --max-batch 16 --delay-us 500 [--device cpu|cuda]

With --max-batch above 1 requests go through `@serve.batch` with the same limits as the other
servers; with 1 each request calls ONNX Runtime on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np
import ray
from ray import serve
from session import onnx_session
from starlette.requests import Request
from starlette.responses import Response


def _answer(output: np.ndarray) -> Response:
    body = {
        "model_name": "mlp",
        "outputs": [
            {"name": "output", "datatype": "FP32", "shape": [1, 256], "data": output.tolist()}
        ],
    }
    return Response(json.dumps(body), media_type="application/json")


@serve.deployment(max_ongoing_requests=64)
class MLP:
    def __init__(self, model: str, device: str, max_batch: int, delay_us: int) -> None:
        self._session = onnx_session(model, device)
        self._batching = max_batch > 1
        self.batched.set_max_batch_size(max_batch)
        self.batched.set_batch_wait_timeout_s(delay_us / 1e6)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0005)
    async def batched(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        return list(self._session.run(None, {"input": np.stack(rows)})[0])

    async def __call__(self, request: Request) -> Response:
        tensor = json.loads(await request.body())["inputs"][0]
        row = np.asarray(tensor["data"], dtype=np.float32).reshape(256)
        if self._batching:
            return _answer(await self.batched(row))
        return _answer(self._session.run(None, {"input": row[None]})[0][0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    for flag in ("--port", "--max-batch", "--delay-us"):
        parser.add_argument(flag, type=int, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    # A cluster of its own (never one RAY_ADDRESS names), in a temp folder of its own.
    os.environ.pop("RAY_ADDRESS", None)
    temp = tempfile.mkdtemp(prefix="peers-ray-")
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=1 if args.device == "cuda" else 0,
        include_dashboard=False,
        _temp_dir=temp,
    )
    try:
        _serve(args)
    finally:  # SIGINT from peers.py ends up here
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _serve(args: argparse.Namespace) -> None:
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    app = MLP.options(ray_actor_options={"num_gpus": 1 if args.device == "cuda" else 0}).bind(
        args.model, args.device, args.max_batch, args.delay_us
    )
    serve.run(app, route_prefix="/v2/models/mlp/infer", blocking=False)
    print("peer ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
