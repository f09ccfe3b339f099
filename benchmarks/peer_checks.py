"""Raw ONNX Runtime in-process (the limit, and the reference answer) and the check that each
server's answer over each measured transport matches it before anything is timed."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from common import time_calls
from peer_clients import PLAIN
from peer_servers import PEERS, Server, infer_body

# The session options every server uses come from one place, benchmarks/peers/session.py.
sys.path.insert(0, str(PEERS))
from session import onnx_session

ROW = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)


@dataclass(frozen=True)
class Limit:
    p50_ms: float  # batch 1
    p99_ms: float
    throughput: float  # batch-1 inferences per second
    batched_throughput: float  # rows per second in batches of 16

    def __str__(self) -> str:
        return (
            f"batch 1: {self.throughput:.0f}/s, p50 {self.p50_ms:.3f} ms, p99 "
            f"{self.p99_ms:.3f} ms; batch 16: {self.batched_throughput:.0f} rows/s"
        )


def raw_onnxruntime(model: Path, cpus: str, device: str) -> tuple[Limit, np.ndarray]:
    """The limit, measured in this process pinned like the servers, and the expected answer."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(cpu) for cpu in cpus.split(",")})
    try:
        session = onnx_session(str(model), device)
        batch = np.repeat(ROW, 16, axis=0)
        single = time_calls("b1", lambda: session.run(None, {"input": ROW}), seconds=3)
        batched = time_calls("b16", lambda: session.run(None, {"input": batch}), seconds=3)
        expected = session.run(None, {"input": ROW})[0]
    finally:
        os.sched_setaffinity(0, before)
    limit = Limit(
        single.percentile(50), single.percentile(99), single.throughput, 16 * batched.throughput
    )
    return limit, expected


def check_answers(
    server: Server, expected: np.ndarray, transports: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Raises when an answer differs from raw ONNX Runtime's; returns the server's version (from
    its V2 metadata, where it has some) and why it cannot be asked over some transports at all."""
    _same(server, "HTTP JSON", _json_answer(server), expected)
    unsupported: dict[str, str] = {}
    for transport in transports:
        if transport in (PLAIN, "HTTP JSON"):
            continue
        try:
            answer = _binary_answer(server) if transport == "HTTP binary" else _grpc_answer(server)
        except Exception as error:  # shown: a peer may lack a V2 extension
            unsupported[transport] = (
                "the check's request fails: " + " ".join(str(error).split())[:160]
            )
            print(f"  {server.name}: no {transport} figures: {unsupported[transport]}")
            continue
        _same(server, transport, answer, expected)
    return _version(server), unsupported


def _same(server: Server, transport: str, answer: np.ndarray, expected: np.ndarray) -> None:
    if not np.allclose(answer.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5):
        raise SystemExit(f"{server.name} over {transport} answers differently from ONNX Runtime")


def _json_answer(server: Server) -> np.ndarray:
    request = urllib.request.Request(
        f"http://{server.http}/v2/models/mlp/infer", infer_body(ROW[0].tolist()), method="POST"
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return np.asarray(json.loads(answer.read())["outputs"][0]["data"], dtype=np.float32)


def _binary_answer(server: Server) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http)
    tensor = httpclient.InferInput("input", [1, 256], "FP32")
    tensor.set_data_from_numpy(ROW, binary_data=True)
    wanted = [httpclient.InferRequestedOutput("output", binary_data=True)]
    result = client.infer("mlp", [tensor], outputs=wanted).as_numpy("output")
    client.close()
    return np.asarray(result)


def _grpc_answer(server: Server) -> np.ndarray:
    client = grpcclient.InferenceServerClient(str(server.grpc))
    tensor = grpcclient.InferInput("input", [1, 256], "FP32")
    tensor.set_data_from_numpy(ROW)
    result = client.infer("mlp", [tensor]).as_numpy("output")
    client.close()
    return np.asarray(result)


def _version(server: Server) -> dict[str, str]:
    try:
        with urllib.request.urlopen(f"http://{server.http}/v2", timeout=10) as answer:
            metadata = json.loads(answer.read())
    except (OSError, ValueError):
        return {}
    return {f"{server.name} server": f"{metadata.get('name')} {metadata.get('version')}"}
