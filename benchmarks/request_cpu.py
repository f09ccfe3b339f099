"""Server CPU per request: inferd under perf_analyzer load, its CPU time read from /proc.

    python benchmarks/request_cpu.py [--trees SRC ...] [--rounds 3] [--seconds 3]
                                     [--cases http-c1-off http-c32-on grpc-c32-on]
                                     [--server-cpus 0 --client-cpus 1]

Throughput on a shared machine says little; the CPU time the server process spends per
request says more, because a loaded machine slows both sides but the server's work per
request stays about the same. Each case serves the example `simple` model (two INT32[16]
inputs, an ONNX add and subtract: the model itself costs a few microseconds), with or without
dynamic batching (max batch 16, 500 us), statistics and metrics on as by default, and loads
it with `perf_analyzer` (batch 1, binary tensors). The figure is the server's CPU seconds
(user + system, every thread) over the requests it answered in that time (its statistics'
success count), in microseconds. Unpinned by default; `--server-cpus` starts the server
pinned to those CPUs (a `taskset -c` list), `--client-cpus` runs `perf_analyzer` on those.

`--trees` runs each case once per source tree (a `src` folder put first on PYTHONPATH), the
trees alternating within each round, so that an A/B of two branches shares the machine's
state; the best round of each is printed (the least disturbed by other work).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from common import ROOT, served
from perf_analyzer_run import PERF_ANALYZER

CONFIG = """
platform: "onnxruntime_onnx"
max_batch_size: 16
input [
  {{ name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] }},
  {{ name: "INPUT1", data_type: TYPE_INT32, dims: [ 16 ] }}
]
output [
  {{ name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 16 ] }},
  {{ name: "OUTPUT1", data_type: TYPE_INT32, dims: [ 16 ] }}
]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters {{ key: "intra_op_thread_count" value {{ string_value: "1" }} }}
{batching}
"""
BATCHING = {"off": "", "on": "dynamic_batching { max_queue_delay_microseconds: 500 }"}
CASES = {  # name -> (protocol, concurrency, batching)
    "http-c1-off": ("http", 1, "off"),
    "http-c32-off": ("http", 32, "off"),
    "http-c32-on": ("http", 32, "on"),
    "grpc-c1-off": ("grpc", 1, "off"),
    "grpc-c32-on": ("grpc", 32, "on"),
}


def write_repository(root: Path) -> None:
    model = ROOT / "examples" / "model_repository" / "simple" / "1" / "model.onnx"
    for batching in BATCHING:
        folder = root / f"simple_{batching}"
        (folder / "1").mkdir(parents=True)
        shutil.copy(model, folder / "1" / "model.onnx")
        (folder / "config.pbtxt").write_text(CONFIG.format(batching=BATCHING[batching]))


def process_cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answered(http_port: int, model: str) -> int:
    url = f"http://127.0.0.1:{http_port}/v2/models/{model}/stats"
    with urllib.request.urlopen(url) as reply:
        document = json.loads(reply.read())
    return int(document["model_stats"][0]["inference_stats"]["success"]["count"])


def measure(
    repository: Path, tree: str, case: str, args: argparse.Namespace
) -> tuple[float, float]:
    """(server CPU us per request, requests per second) of one case on one source tree."""
    protocol, concurrency, batching = CASES[case]
    model = f"simple_{batching}"
    seconds = args.seconds
    os.environ["PYTHONPATH"] = tree  # the server subprocess imports this tree
    with served(repository, "--log-verbose", "0", cpu=args.server_cpus) as server:
        url = server.http_url if protocol == "http" else server.grpc_url
        client = ["taskset", "-c", args.client_cpus] if args.client_cpus else []
        command = [
            *client, PERF_ANALYZER, "-m", model, "-u", url, "-i", protocol, "-b", "1",
            "--concurrency-range", str(concurrency),
            "--stability-percentage", "999", "--max-trials", "3", "--measurement-interval",
        ]  # fmt: skip
        subprocess.run([*command, "300"], capture_output=True, check=True)  # warm-up
        pid = server.process.pid
        cpu, count, start = process_cpu_seconds(pid), answered(server.http_port, model), time.time()
        window_ms = str(int(seconds * 1000 / 3))  # three windows
        subprocess.run([*command, window_ms], capture_output=True, check=True)
        cpu = process_cpu_seconds(pid) - cpu
        elapsed = time.time() - start
        count = answered(server.http_port, model) - count
    return cpu / count * 1e6, count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs="+", default=[str(ROOT / "src")])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--server-cpus", help="taskset -c list the server starts pinned to")
    parser.add_argument("--client-cpus", help="taskset -c list perf_analyzer runs on")
    args = parser.parse_args()
    best: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        write_repository(repository)
        for round_ in range(args.rounds):
            for case in args.cases:
                for tree in args.trees:
                    us, rate = measure(repository, tree, case, args)
                    best.setdefault((case, tree), []).append(us)
                    figures = f"{us:7.1f} us/request, {rate:,.0f}/s"
                    print(f"round {round_ + 1} {case:13} {tree}: {figures}")
    print("\nbest of each (server CPU us per request):")
    for (case, tree), figures in best.items():
        print(f"{case:13} {min(figures):7.1f}  {tree}")


if __name__ == "__main__":
    main()
