"""Server CPU per request: inferd under perf_analyzer load, its CPU time read from /proc.

    python benchmarks/request_cpu.py [--trees SRC ...] [--baseline] [--rounds 3] [--seconds 3]
                                     [--cases http-c1-off http-c32-on grpc-c32-on]
                                     [--server-cpus 0 --client-cpus 1]

Throughput on a shared machine says little; the CPU time the server process spends per
request says more, because a loaded machine slows both sides but the server's work per
request stays about the same. Each case serves the example `simple` model (two INT32[16]
inputs, an ONNX add and subtract: the model itself costs a few microseconds), with or without
dynamic batching (max batch 16, 500 us), statistics and metrics on as by default, and loads
it with `perf_analyzer` (batch 1, binary tensors). The figure is the server's CPU seconds
(user + system, every thread) over a fixed number of requests (`perf_analyzer
--request-count`, about `--seconds` of them at the rate of a short warm-up run), in
microseconds. Unpinned by default; `--server-cpus` starts the server pinned to those CPUs
(a `taskset -c` list), `--client-cpus` runs `perf_analyzer` on those.

`--baseline` measures `baseline_server.py` (the bare-bones V2 endpoint) beside the trees. It
serves only the example MLP (one FP32[256] input; a few hundred µs of model per row), so with
it every server serves that model instead of `simple`, and only the HTTP cases run: the
difference between inferd's figure and the baseline's is what inferd's request path costs
above the work no server can avoid.

`--trees` runs each case once per source tree (a `src` folder put first on PYTHONPATH), the
trees alternating within each round, so that an A/B of two branches shares the machine's
state; the best round of each is printed (the least disturbed by other work), with the range.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from baseline_run import served_baseline
from common import ROOT, served, write_mlp_repository
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
MLP_CONFIG = """
max_batch_size: 16
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters {{ key: "intra_op_thread_count" value {{ string_value: "1" }} }}
{batching}
"""
BATCHING = {"off": "", "on": "dynamic_batching { max_queue_delay_microseconds: 500 }"}
SIMPLE, MLP = "simple", "mlp"
BASELINE = "baseline"  # in place of a tree: baseline_server.py
CASES = {  # name -> (protocol, concurrency, batching)
    "http-c1-off": ("http", 1, "off"),
    "http-c32-off": ("http", 32, "off"),
    "http-c32-on": ("http", 32, "on"),
    "grpc-c1-off": ("grpc", 1, "off"),
    "grpc-c32-on": ("grpc", 32, "on"),
}


def write_repositories(root: Path, mlp: bool) -> None:
    """One repository per batching setting (`root / "on"`, `root / "off"`), each holding the
    model the run serves (`simple`, or with `mlp` the example MLP) configured that way."""
    simple = ROOT / "examples" / "model_repository" / "simple" / "1" / "model.onnx"
    for batching, scheduler in BATCHING.items():
        repository = root / batching
        if mlp:
            write_mlp_repository(repository, MLP_CONFIG.format(batching=scheduler))
            continue
        folder = repository / SIMPLE
        (folder / "1").mkdir(parents=True)
        shutil.copy(simple, folder / "1" / "model.onnx")
        (folder / "config.pbtxt").write_text(CONFIG.format(batching=scheduler))


def process_cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(
    repository: Path, tree: str, batching: str, args: argparse.Namespace
) -> Iterator[tuple[dict[str, str], int]]:
    """Each protocol's URL and the pid of the server the case runs on: the baseline where
    `tree` is BASELINE, else inferd from `tree` serving `repository / batching`."""
    if tree == BASELINE:
        model = repository / batching / MLP / "1" / "model.onnx"
        with served_baseline(model, batching, args.server_cpus) as baseline:
            yield {"http": baseline.url}, baseline.pid
        return
    os.environ["PYTHONPATH"] = tree  # the server subprocess imports this tree
    with served(repository / batching, "--log-verbose", "0", cpu=args.server_cpus) as inferd:
        yield {"http": inferd.http_url, "grpc": inferd.grpc_url}, inferd.process.pid


def measure(
    repository: Path, tree: str, case: str, args: argparse.Namespace
) -> tuple[float, float] | None:
    """(server CPU us per request, requests per second) of one case on one server; None where
    perf_analyzer did not finish."""
    protocol, concurrency, batching = CASES[case]
    with server(repository, tree, batching, args) as (urls, pid):
        client = ["taskset", "-c", args.client_cpus] if args.client_cpus else []
        command = [
            *client, PERF_ANALYZER, "-m", model_name(args), "-u", urls[protocol], "-i", protocol,
            "-b", "1", "--concurrency-range", str(concurrency),
        ]  # fmt: skip
        warm_up = [*command, "--stability-percentage", "999", "--max-trials", "3"]
        warm_up += ["--measurement-interval", "300"]
        rate = float(run(warm_up).split("throughput: ")[1].split()[0])
        count = max(int(rate * args.seconds), concurrency * 10)
        cpu, start = process_cpu_seconds(pid), time.perf_counter()
        try:
            run([*command, "--request-count", str(count)], timeout=3 * args.seconds + 30)
        except subprocess.TimeoutExpired:
            # perf_analyzer 2.60 now and then never exits with --request-count (seen after
            # every request was answered, its workers gone, the server idle).
            return None
        cpu = process_cpu_seconds(pid) - cpu
        elapsed = time.perf_counter() - start
    return cpu / count * 1e6, count / elapsed


def model_name(args: argparse.Namespace) -> str:
    return MLP if args.baseline else SIMPLE


def run(command: list[str], timeout: float | None = None) -> str:
    done = subprocess.run(command, capture_output=True, check=True, text=True, timeout=timeout)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs="+", default=[str(ROOT / "src")])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument(
        "--baseline", action="store_true", help="baseline_server.py too, all on the example MLP"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--server-cpus", help="taskset -c list the server starts pinned to")
    parser.add_argument("--client-cpus", help="taskset -c list perf_analyzer runs on")
    args = parser.parse_args()
    servers = [*args.trees, BASELINE] if args.baseline else args.trees
    cases = [case for case in args.cases if not args.baseline or CASES[case][0] == "http"]
    best: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        write_repositories(repository, args.baseline)
        for round_ in range(args.rounds):
            for case in cases:
                for tree in servers:
                    measured = measure(repository, tree, case, args)
                    if measured is None:
                        print(f"round {round_ + 1} {case:13} {tree}: perf_analyzer hung, dropped")
                        continue
                    us, rate = measured
                    best.setdefault((case, tree), []).append(us)
                    busy = us * rate / 1e6  # CPUs the server kept busy
                    figures = f"{us:7.1f} us/request, {rate:,.0f}/s, {busy:.2f} CPUs busy"
                    print(f"round {round_ + 1} {case:13} {tree}: {figures}")
    print("\nbest of each, and the range of its rounds (server CPU us per request):")
    for (case, tree), rounds_us in best.items():
        low, high = min(rounds_us), max(rounds_us)
        print(f"{case:13} {low:7.1f}  ({low:.1f}-{high:.1f})  {tree}")


if __name__ == "__main__":
    main()
