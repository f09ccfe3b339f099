"""Sequence batcher: many concurrent sequences against the real server, direct vs oldest.

    python benchmarks/sequence.py [--sequences 64] [--steps 50] [--instances 2]

Serves the implicit-state accumulator (`sequence_accumulate_state`) once per strategy; each
sequence is a closed loop of `--steps` requests over tritonclient.grpc.aio (the next step is
sent when the previous answered). Every answer is checked against the running sum. Prints
requests per second and the p50 / p99 latency of one step.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, generate_models, served  # common puts examples/ on sys.path

CONFIG = ROOT / "examples" / "model_repository" / "sequence_accumulate_state" / "config.pbtxt"

STRATEGIES = {
    "direct": "direct {{ }}",
    "oldest": "oldest {{ max_candidate_sequences: {slots} }}",
    "oldest, 1 ms delay": (
        "oldest {{ max_candidate_sequences: {slots}, max_queue_delay_microseconds: 1000 }}"
    ),
}


def write_repository(root: Path, strategy: str, slots: int, instances: int) -> None:
    config = CONFIG.read_text()
    config = config.replace("max_batch_size: 8", f"max_batch_size: {slots}")
    config = config.replace("count: 2", f"count: {instances}")
    config = config.replace("  state [", f"  {strategy.format(slots=slots)}\n  state [")
    model = root / "sequence_accumulate_state"
    generate_models.accumulate_state_model(model / "1" / "model.onnx")
    (model / "config.pbtxt").write_text(config)


async def drive(url: str, sequences: int, steps: int) -> tuple[float, list[float]]:
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(url)
    latencies: list[float] = []

    async def one_sequence(number: int) -> None:
        total = 0
        for step in range(steps):
            value = number + step
            infer_input = grpcclient.InferInput("INPUT", [1, 1], "INT32")
            infer_input.set_data_from_numpy(np.array([[value]], dtype=np.int32))
            begin = time.perf_counter()
            result = await client.infer(
                "sequence_accumulate_state",
                [infer_input],
                sequence_id=number + 1,
                sequence_start=step == 0,
                sequence_end=step == steps - 1,
            )
            latencies.append(time.perf_counter() - begin)
            total += value
            got = int(result.as_numpy("OUTPUT")[0, 0])
            if got != total:
                raise AssertionError(f"sequence {number + 1} step {step}: {got} != {total}")

    begin = time.perf_counter()
    await asyncio.gather(*(one_sequence(n) for n in range(sequences)))
    elapsed = time.perf_counter() - begin
    await client.close()
    return elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--instances", type=int, default=2)
    args = parser.parse_args()
    # Enough slots for every sequence: sequences * instances slots in all, none backlogged.
    slots = -(-args.sequences // args.instances)
    print(
        f"{args.sequences} sequences x {args.steps} steps, {args.instances} instances x "
        f"{slots} slots, gRPC"
    )
    print(f"{'strategy':<22} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for label, strategy in STRATEGIES.items():
        with tempfile.TemporaryDirectory() as folder:
            write_repository(Path(folder), strategy, slots, args.instances)
            with served(Path(folder)) as server:
                asyncio.run(drive(server.grpc_url, args.sequences, 2))  # warm-up
                elapsed, latencies = asyncio.run(drive(server.grpc_url, args.sequences, args.steps))
        p50, p99 = np.percentile(np.asarray(latencies) * 1e3, [50, 99])
        print(f"{label:<22} {len(latencies) / elapsed:10.1f} {p50:8.2f} {p99:8.2f}")


if __name__ == "__main__":
    main()
