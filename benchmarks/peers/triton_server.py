"""Triton Inference Server as PyTriton runs it: the `tritonserver` binary bundled in the
nvidia-pytriton wheel, with its Python backend handing each batch to this process, which calls
ONNX Runtime. (Triton's native ONNX Runtime backend ships only in NVIDIA's containers.)

    python triton_server.py MODEL --http-port P --grpc-port P --metrics-port P
                            --max-batch 16 --delay-us 500 [--device cpu|cuda]

--max-batch 1 switches Triton's dynamic batcher off in effect: every execution holds one request.
"""

from __future__ import annotations

import argparse
import os
import sysconfig

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
from session import onnx_session


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    for flag in ("--http-port", "--grpc-port", "--metrics-port", "--max-batch", "--delay-us"):
        parser.add_argument(flag, type=int, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    session = onnx_session(args.model, args.device)
    # Triton's Python backend stub embeds libpython3.11: it must be this interpreter's, not a
    # system one of another patch release (whose stdlib would not match this one's).
    libraries = [sysconfig.get_config_var("LIBDIR"), os.environ.get("LD_LIBRARY_PATH", "")]
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, libraries))

    @batch
    def infer(input: np.ndarray) -> dict[str, np.ndarray]:
        return {"output": session.run(None, {"input": input})[0]}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
    )
    batcher = DynamicBatcher(max_queue_delay_microseconds=args.delay_us)
    # PyTriton guards some of Triton's endpoints with a token; perf_analyzer reads the
    # statistics one (server-side timings), so that one is left open, the others stay guarded.
    security = TritonSecurityConfig(
        restricted_endpoints=["shared-memory", "model-repository", "trace", "logging"]
    )
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name="mlp",
            infer_func=infer,
            inputs=[Tensor(name="input", dtype=np.float32, shape=(256,))],
            outputs=[Tensor(name="output", dtype=np.float32, shape=(256,))],
            config=ModelConfig(max_batch_size=args.max_batch, batcher=batcher),
            strict=True,
        )
        print("peer ready", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
