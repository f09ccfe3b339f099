"""SIGTERM while gRPC requests are in flight: every accepted request is answered."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as grpcclient

import generate_models
from tests.integration.server import RunningServer, running_server


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")
    )


async def _until_accepted(server: RunningServer, count: int) -> None:
    """Wait until the server has taken `count` requests (waiting or answered): a request the
    client sent but the server has not yet taken is not one SIGTERM must finish."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(_read, server.metrics_url)
        taken = _metric(text, "nv_inference_pending_request_count") + _metric(
            text, "nv_inference_request_success"
        )
        if taken >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the server did not take {count} requests")


def _read(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text: str = answer.read().decode()
    return text


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
            await _until_accepted(server, 15)  # the 16th may be running; most not yet run
            server.process.send_signal(signal.SIGTERM)
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                await client.close()

        assert asyncio.run(scenario()) == [(4, 64)] * 16
        assert server.process.wait(timeout=30) == 0
