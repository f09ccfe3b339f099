"""inferd next to Triton, MLServer and Ray Serve, and raw ONNX Runtime as the limit, in one run.

    python benchmarks/peers.py [--rounds 3] [--window-ms 2000] [--concurrency 1 8 32]
                               [--server-cpus 0] [--client-cpus 1] [--device cpu|cuda]
                               [--servers inferd triton mlserver rayserve]

The example MLP (256->1024->1024->256 FP32, benchmarks/common.py), one file for every server,
each calling ONNX Runtime with one intra-op thread:
- inferd with its ONNX Runtime backend;
- Triton: the `tritonserver` bundled in nvidia-pytriton, whose Python backend hands batches to a
  Python function calling ONNX Runtime (Triton's native ONNX backend ships only in NVIDIA's
  containers);
- MLServer with a small custom runtime calling ONNX Runtime (it has none for ONNX);
- Ray Serve, a deployment calling ONNX Runtime (`@serve.batch` when batching), plain HTTP.
The peers live in virtual environments of their own under ~/.cache/inferd-peers (made on first
use from benchmarks/peers/requirements-*.txt), never in inferd's. Each server runs pinned to
--server-cpus, the clients to --client-cpus; batching off, then on with the same limits
everywhere (max batch 16, 500 us). Triton's perf_analyzer drives every V2 server over each of
HTTP binary, HTTP JSON and gRPC it takes (the table says why where one is not measured); a
plain-HTTP closed loop (processes) drives every server with the same V2 JSON body. Each answer
is checked against raw ONNX Runtime before timing. Rounds are interleaved in time; the best
round of each cell is shown with the spread over rounds, and written as a latency-vs-throughput
plot (docs/images/peers.png). Figures are never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

import peer_servers
from common import ROOT, Cell, write_mlp_repository
from peer_checks import check_answers, raw_onnxruntime
from peer_clients import PERF_ANALYZER_TRANSPORTS, PLAIN, Sample, perf_analyzer, plain_http
from peer_report import label, machine, plot, table

PERF_ANALYZER_SERVERS = ("inferd", "triton", "mlserver")
# perf_analyzer's words when a loaded machine, not the server, spoilt a cell: that cell only.
TRANSIENT = ("stable measurement", "No valid requests recorded")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window-ms", type=int, default=2000, help="perf_analyzer window")
    parser.add_argument("--plain-seconds", type=float, default=4, help="plain-client run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--server-cpus", default="0", help="taskset list for every server")
    parser.add_argument("--client-cpus", default="1", help="taskset list for the clients")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--servers", nargs="+", default=list(peer_servers.LAUNCHERS))
    parser.add_argument("--batching", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "images" / "peers.png")
    return parser.parse_args()


def _require_gpu() -> None:
    smi = shutil.which("nvidia-smi")
    listed = smi and subprocess.run([smi, "-L"], capture_output=True, text=True).stdout
    if not listed or "GPU" not in listed:
        sys.exit(
            "peers.py --device cuda: no GPU is present on this machine (nvidia-smi lists "
            "none); run it on a machine with an NVIDIA GPU, or use --device cpu."
        )
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        sys.exit(
            "peers.py --device cuda: inferd's environment has no CUDA-enabled ONNX Runtime "
            f"(install onnxruntime-gpu=={ort.__version__} in place of onnxruntime)."
        )


def _same_onnxruntime(servers: list[str]) -> None:
    """Every peer's requirements pin the ONNX Runtime that inferd runs here, or nothing is fair."""
    for name in servers:
        if name == "inferd":
            continue
        pins = (peer_servers.PEERS / f"requirements-{name}.txt").read_text()
        if f"onnxruntime=={ort.__version__}" not in pins:
            sys.exit(
                f"requirements-{name}.txt does not pin onnxruntime=={ort.__version__}, the "
                "version inferd runs here; align the pins first."
            )


def _transports(name: str, skipped: dict[tuple[str, str], str]) -> list[str]:
    measured = [PLAIN]
    if name in PERF_ANALYZER_SERVERS:
        measured = [t for t in PERF_ANALYZER_TRANSPORTS if (name, t) not in skipped] + measured
    return measured


def _measure(
    server: peer_servers.Server,
    batching: str,
    args: argparse.Namespace,
    skipped: dict[tuple[str, str], str],
) -> dict[Cell, Sample]:
    samples: dict[Cell, Sample] = {}
    for transport in _transports(server.name, skipped):
        for concurrency in args.concurrency:
            if transport == PLAIN:
                sample: Sample | str = plain_http(server, concurrency, args.plain_seconds)
            else:
                sample = perf_analyzer(
                    server, transport, concurrency, args.window_ms, args.client_cpus
                )
            if isinstance(sample, str) and any(word in sample for word in TRANSIENT):
                print(f"  {server.name} {transport} c={concurrency}: no stable figures: {sample}")
                continue
            if isinstance(sample, str):  # perf_analyzer cannot drive it; the plain client can
                skipped[server.name, transport] = f"perf_analyzer fails: {sample}"
                print(
                    f"  {server.name} {transport}: not measured: {skipped[server.name, transport]}"
                )
                break
            cell = Cell(server.name, transport, batching, concurrency)
            samples[cell] = sample
            print(
                f"  {label(cell):<64} {sample.throughput:8.0f}/s  p50 {sample.p50_ms:7.2f} ms"
                f"  p99 {sample.p99_ms:7.2f} ms  server CPU {sample.server_cpu:4.2f}"
            )
    return samples


def _round(
    number: int,
    model: Path,
    expected: np.ndarray,
    args: argparse.Namespace,
    skipped: dict[tuple[str, str], str],
    versions: dict[str, str],
) -> dict[Cell, Sample]:
    # Each round starts with the next server, so no server always runs first or last.
    order = args.servers[number % len(args.servers) :] + args.servers[: number % len(args.servers)]
    samples: dict[Cell, Sample] = {}
    for name in order:
        launch = peer_servers.LAUNCHERS[name]
        for batching in args.batching:
            print(f"round {number + 1}: {name}, batching {batching}", flush=True)
            try:
                with launch(model, batching == "on", args.server_cpus, args.device) as server:
                    version, unsupported = check_answers(
                        server, expected, _transports(name, skipped)
                    )
                    versions.update(version)
                    skipped.update({(name, t): why for t, why in unsupported.items()})
                    samples.update(_measure(server, batching, args, skipped))
            except (OSError, RuntimeError) as error:  # the other cells of the round still count
                print(f"  round {number + 1}: {name}, batching {batching} failed: {error}")
    return samples


def main() -> None:
    args = _arguments()
    if args.device == "cuda":
        _require_gpu()
    _same_onnxruntime(args.servers)
    # This process and the clients it forks stay off the servers' cores.
    os.sched_setaffinity(0, {int(cpu) for cpu in args.client_cpus.split(",")})
    pythons = {
        name: peer_servers.peer_python(name, args.device)
        for name in args.servers
        if name != "inferd"
    }
    fairness = (
        f"Fair set-up: every server pinned to CPU(s) {args.server_cpus} (taskset, whole process "
        f"tree), clients on {args.client_cpus}; one model file, ONNX Runtime {ort.__version__} "
        f"with one intra-op thread everywhere ({args.device}); batching off, then on with max "
        f"batch {peer_servers.MAX_BATCH} and {peer_servers.DELAY_US} us in every server; "
        "Triton = PyTriton's bundled tritonserver with a Python function calling ONNX Runtime "
        "(not Triton's native ONNX backend)."
    )
    print(fairness, flush=True)
    with tempfile.TemporaryDirectory() as folder:
        model = write_mlp_repository(Path(folder), None)
        limit, expected = raw_onnxruntime(model, args.server_cpus, args.device)
        print(f"raw ONNX Runtime in-process: {limit}", flush=True)
        rounds: dict[Cell, list[Sample]] = defaultdict(list)
        skipped: dict[tuple[str, str], str] = {}
        versions = {"onnxruntime": ort.__version__}
        for name, python in pythons.items():
            distribution = peer_servers.TITLES[name][1]
            versions[distribution] = peer_servers.installed_version(python, distribution)
        try:
            for number in range(args.rounds):
                for cell, sample in _round(
                    number, model, expected, args, skipped, versions
                ).items():
                    rounds[cell].append(sample)
        except KeyboardInterrupt:  # stopped early: what was measured is still reported
            print("stopped: reporting the rounds measured so far")
    print()
    print(machine())
    print("versions: " + ", ".join(f"{key} {value}" for key, value in sorted(versions.items())))
    print(fairness)
    for name in set(args.servers) - set(PERF_ANALYZER_SERVERS):
        for transport in PERF_ANALYZER_TRANSPORTS:
            skipped[name, transport] = "speaks no V2 protocol (plain HTTP client only)"
    print(table(rounds, limit, skipped))
    plot(rounds, limit, args.plot)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
