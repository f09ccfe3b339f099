"""inferd's own CPU per streamed token, without gRPC: the engine's stream, the iterative
scheduler, the response channel and the gRPC stream encoder, in one process.

    python benchmarks/stream_engine.py [--streams 64] [--steps 200] [--rounds 3] [--call]

`benchmarks/streaming.py`'s generative stand-in at width 16 and one layer, so a step costs
next to nothing, served with `iterative_sequence`; `--streams` requests of `--steps` tokens
each run at once, every response encoded as the gRPC stream would send it, on uvloop.
`--call`: the requests go through one `ModelStreamInfer` call's `StreamCall` instead (as
`streaming.py`'s clients send them: decoded from their messages, each response taken into
the call's outbox in the callback that releases it, then serialised), all but grpc itself.
Printed per round: the event loop's CPU per token (this thread), the process's, and tokens/s.
What gRPC itself costs per message is `streaming.py`'s figure less this one. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import uvloop
from tritonclient.grpc import service_pb2 as pb

# The stand-in model comes from the streaming benchmark beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import streaming
from inferd.backends.registry import BackendRegistry
from inferd.core.types import InferRequest
from inferd.engine.api import EngineSettings
from inferd.engine.engine import Engine
from inferd.frontends.grpc.stream import StreamCall
from inferd.frontends.grpc.stream_encoder import StreamEncoder
from inferd.frontends.grpc.wire import serialize_stream_response
from inferd.frontends.shared_memory import SharedMemoryRegistry


def _repository(streams: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="stream_engine_"))
    folder = root / "gen" / "1"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(streaming.MODEL.format(width=16, layers=1))
    config = streaming.CONFIG.format(
        name="gen",
        max_batch_size=streams,
        mode="step",
        scheduling="sequence_batching { iterative_sequence: true }",
    )
    (root / "gen" / "config.pbtxt").write_text(config)
    return root


async def _one(engine: Engine, memory: SharedMemoryRegistry, steps: int) -> int:
    """Streams one request of `steps` tokens, encoding each: how many responses came."""
    request = InferRequest("gen", {"LENGTH": np.array([[steps]], np.int32)})
    encoder = StreamEncoder(None, memory)
    count = 0
    async for response in engine.stream(request):
        encoder.encode(response)
        count += 1
    return count


async def _call(engine: Engine, memory: SharedMemoryRegistry, streams: int, steps: int) -> int:
    """Streams `streams` requests of `steps` tokens through one `ModelStreamInfer` call's
    `StreamCall`, serialising each response: how many came."""
    tensor = pb.ModelInferRequest.InferInputTensor(name="LENGTH", datatype="INT32", shape=[1, 1])
    contents = np.array([steps], np.int32).tobytes()

    async def messages() -> AsyncIterator[Any]:
        for number in range(streams):
            yield pb.ModelInferRequest(
                model_name="gen", id=str(number), inputs=[tensor], raw_input_contents=[contents]
            )

    async def unary(message: Any) -> Any:
        raise AssertionError(f"a decoupled model's request took the unary path: {message}")

    count = 0
    async for response in StreamCall(engine, memory, unary).responses(messages()):
        serialize_stream_response(response)
        count += 1
    assert count == streams * steps, f"{count} responses for {streams * steps} tokens"
    return count


async def _run(streams: int, steps: int, rounds: int, call: bool) -> None:
    engine = Engine(EngineSettings(_repository(streams)), BackendRegistry())
    await engine.start()
    memory = SharedMemoryRegistry()
    try:
        await asyncio.gather(*(_one(engine, memory, steps) for _ in range(8)))  # warm-up
        for round_number in range(1, rounds + 1):
            thread, process, wall = time.thread_time(), time.process_time(), time.perf_counter()
            if call:
                tokens = await _call(engine, memory, streams, steps)
            else:
                tokens = sum(
                    await asyncio.gather(*(_one(engine, memory, steps) for _ in range(streams)))
                )
            loop_us = (time.thread_time() - thread) / tokens * 1e6
            process_us = (time.process_time() - process) / tokens * 1e6
            rate = tokens / (time.perf_counter() - wall)
            print(
                f"round {round_number}: event loop {loop_us:.1f} us/token, "
                f"process {process_us:.1f} us/token, {rate:,.0f} tokens/s"
            )
    finally:
        await engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--call", action="store_true", help="through one StreamCall")
    options = parser.parse_args()
    uvloop.run(_run(options.streams, options.steps, options.rounds, options.call))


if __name__ == "__main__":
    main()
