"""inferd's request path against a bare-bones V2 endpoint and raw ONNX Runtime, in one run.

    python benchmarks/request_path.py [--rounds 2] [--window-ms 2000] [--concurrency 1 8 32]
                                      [--server-cpus 0] [--client-cpus 1]

The example MLP, one instance, one intra-op thread, batch-1 requests. Each server (inferd, then
`baseline_server.py`) runs pinned to `--server-cpus`; Triton's `perf_analyzer` (the wrapper in
../shared/tools, or `$PERF_ANALYZER`) loads it from `--client-cpus`. For batching off and on
(max batch 16, 500 µs delay in both servers) it measures:
- the baseline over HTTP with binary tensors (the only encoding it speaks),
- inferd over HTTP binary, HTTP JSON and gRPC,
at each concurrency, in `--rounds` interleaved rounds, and prints the best round of each cell
with the spread, the ratios inferd / baseline, and c=1 p50 next to raw ONNX Runtime's.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from baseline_run import DELAY_US, MAX_BATCH, served_baseline
from common import Cell, served, time_calls, write_mlp_repository
from perf_analyzer_run import TRANSPORTS, UNSTABLE, run_perf_analyzer

BATCHING = {"off": "", "on": f"dynamic_batching {{ max_queue_delay_microseconds: {DELAY_US} }}"}
CONFIG = """
max_batch_size: {max_batch}
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters {{ key: "intra_op_thread_count" value {{ string_value: "1" }} }}
{batching}
"""


@dataclass(frozen=True)
class Sample:
    throughput: float
    p50_ms: float
    p99_ms: float


def perf_analyzer(
    url: str, protocol: str, extra: list[str], concurrency: int, args: argparse.Namespace
) -> Sample | None:
    row = run_perf_analyzer(url, protocol, extra, concurrency, args.window_ms, args.client_cpus)
    if isinstance(row, str):
        print(f"  perf_analyzer failed: {row}")
        return None
    if UNSTABLE in row:
        print(f"  {url} c={concurrency}: windows over 25 % apart; 3 windows taken as they were")
    return Sample(
        float(row["Inferences/Second"]),
        float(row["p50 latency"]) / 1000,
        float(row["p99 latency"]) / 1000,
    )


def measure_baseline(model: Path, batching: str, args: argparse.Namespace) -> dict[Cell, Sample]:
    with served_baseline(model, batching, args.server_cpus) as baseline:
        return _sweep("baseline", baseline.url, {"HTTP binary": None}, batching, args)


def measure_inferd(repository: Path, batching: str, args: argparse.Namespace) -> dict[Cell, Sample]:
    config = CONFIG.format(max_batch=MAX_BATCH, batching=BATCHING[batching])
    (repository / "mlp" / "config.pbtxt").write_text(config)
    with served(repository, cpu=args.server_cpus) as server:
        urls = {"http": server.http_url, "grpc": server.grpc_url}
        return _sweep("inferd", urls, dict.fromkeys(args.transports), batching, args)


def _sweep(
    name: str,
    urls: str | dict[str, str],
    transports: dict[str, None],
    batching: str,
    args: argparse.Namespace,
) -> dict[Cell, Sample]:
    samples: dict[Cell, Sample] = {}
    for transport in transports:
        protocol, extra = TRANSPORTS[transport]
        url = urls if isinstance(urls, str) else urls[protocol]
        for concurrency in args.concurrency:
            sample = perf_analyzer(url, protocol, extra, concurrency, args)
            if sample is not None:
                samples[Cell(name, transport, batching, concurrency)] = sample
    return samples


def raw_onnxruntime(model: Path, seconds: float) -> tuple[float, float, float]:
    """Batch-1 p50 (ms) and throughput, and batch-16 samples/s, in this process on one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, 256)).astype(np.float32)
    sixteen = rng.standard_normal((MAX_BATCH, 256)).astype(np.float32)
    single = time_calls("", lambda: session.run(None, {"input": one}), seconds)
    batched = time_calls("", lambda: session.run(None, {"input": sixteen}), seconds)
    return single.percentile(50), single.throughput, batched.throughput * MAX_BATCH


def _best(samples: list[Sample]) -> tuple[Sample, float]:
    """The round with the highest throughput, and the spread of throughput across rounds."""
    best = max(samples, key=lambda s: s.throughput)
    spread = (best.throughput - min(s.throughput for s in samples)) / best.throughput
    return best, spread


def _cells(sample: Sample) -> str:
    return f"{sample.throughput:10,.0f} {sample.p50_ms:6.2f}/{sample.p99_ms:<6.2f}"


def _line(rounds: dict[Cell, list[Sample]], transport: str, batching: str, concurrency: int) -> str:
    served, spread = _best(rounds[Cell("inferd", transport, batching, concurrency)])
    line = f"{f'{transport}, c={concurrency}, batching {batching}':<34} {_cells(served)}"
    if transport == "HTTP binary":
        bare_samples = rounds.get(Cell("baseline", transport, batching, concurrency))
        if not bare_samples:
            return line
        bare, bare_spread = _best(bare_samples)
        ratio = served.throughput / bare.throughput
        return f"{line} {_cells(bare)} {ratio:6.2f}x  (spread {spread:.0%} / {bare_spread:.0%})"
    binary = rounds.get(Cell("inferd", "HTTP binary", batching, concurrency))
    if not binary:
        return line
    ratio = served.throughput / _best(binary)[0].throughput
    return f"{line} {'':>24} {ratio:6.2f}x of inferd's HTTP binary"


def report(
    rounds: dict[Cell, list[Sample]], raw: tuple[float, float, float], args: argparse.Namespace
) -> None:
    raw_p50, raw_rate, raw_batch_rate = raw
    print(
        f"\nraw ONNX Runtime, one thread: batch 1 {raw_rate:,.0f}/s p50 {raw_p50:.3f} ms; "
        f"batch {MAX_BATCH} {raw_batch_rate:,.0f} samples/s"
    )
    print(f"best of {args.rounds} rounds (spread = (best - worst) / best throughput)\n")
    heading = f"{'load':<34} {'inferd /s':>10} {'p50/p99 ms':>13}"
    print(f"{heading} {'baseline /s':>10} {'p50/p99 ms':>13} {'ratio':>7}")
    for batching in args.batching:
        for concurrency in args.concurrency:
            for transport in args.transports:
                if Cell("inferd", transport, batching, concurrency) in rounds:
                    print(_line(rounds, transport, batching, concurrency))
    for batching in args.batching:
        for server in ("inferd", "baseline"):
            one = rounds.get(Cell(server, "HTTP binary", batching, 1))
            if one:
                p50 = min(s.p50_ms for s in one)
                print(
                    f"c=1 p50, batching {batching}, {server}: {p50:.3f} ms = raw ONNX Runtime "
                    f"+ {p50 - raw_p50:.3f} ms"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--window-ms", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--transports", nargs="+", default=list(TRANSPORTS), choices=list(TRANSPORTS)
    )
    parser.add_argument("--batching", nargs="+", default=list(BATCHING), choices=list(BATCHING))
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    args = parser.parse_args()
    rounds: dict[Cell, list[Sample]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        model = write_mlp_repository(repository, None)
        raw = raw_onnxruntime(model, seconds=2)
        for number in range(args.rounds):
            print(f"round {number + 1} of {args.rounds}", flush=True)
            for batching in args.batching:
                for samples in (
                    measure_baseline(model, batching, args),
                    measure_inferd(repository, batching, args),
                ):
                    for cell, sample in samples.items():
                        rounds[cell].append(sample)
    report(rounds, raw, args)


if __name__ == "__main__":
    main()
