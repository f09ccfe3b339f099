"""SIGTERM while gRPC requests are in flight: every accepted request is answered."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as grpcclient

import generate_models
from tests.integration.server import running_server


def test_sigterm_finishes_accepted_grpc_requests(tmp_path: Path) -> None:
    # Big enough that 16 requests queue behind one instance for a while.
    generate_models.mlp_model(tmp_path / "mlp" / "1" / "model.onnx", (64, 2048, 2048, 64))
    with running_server(tmp_path, "--default-max-batch-size", "0") as server:

        async def scenario() -> list[tuple[int, ...]]:
            client = grpcclient.InferenceServerClient(server.grpc_url)

            async def one() -> tuple[int, ...]:
                item = grpcclient.InferInput("input", [4, 64], "FP32")
                item.set_data_from_numpy(np.ones((4, 64), dtype=np.float32))
                result = await client.infer("mlp", [item])
                return tuple(result.as_numpy("output").shape)

            tasks = [asyncio.create_task(one()) for _ in range(16)]
            await asyncio.sleep(0.05)  # accepted and queued, most not yet run
            server.process.send_signal(signal.SIGTERM)
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                await client.close()

        assert asyncio.run(scenario()) == [(4, 64)] * 16
        assert server.process.wait(timeout=30) == 0
