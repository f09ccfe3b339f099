"""Per thread of the server: CPU and context switches per request, and the batches formed.

    python benchmarks/request_threads.py [--trees SRC ...] [--floor] [--transport grpc|http]
                                         [--rounds 2] [--seconds 6]
                                         [--server-cpus 0 --client-cpus 1]

inferd from each source tree (a `src` folder put first on PYTHONPATH) serves the example MLP
(one instance, one intra-op thread) with dynamic batching (max batch 16, 500 us), pinned to
`--server-cpus`, loaded by `perf_analyzer` (batch 1, c=32) from `--client-cpus`; with
`--floor`, `grpc_floor.py`'s grpc.aio server that answers with a ready-made message runs beside
them. The trees alternate within each round. For a fixed number of requests (about `--seconds`
of them at a warm-up run's rate), each thread's CPU time and its voluntary and involuntary
context switches are read from /proc, per request, with the requests per batch (inferd's
statistics). On one CPU, an involuntary switch of the event loop's thread is the loop losing the
CPU to another thread it just woke (grpc's completion-queue poller, mostly): what grpc.aio's
thread hand-offs cost shows here, and not in a Python profiler's samples.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from baseline_run import MAX_BATCH
from common import free_port, served, write_mlp_repository
from perf_analyzer_run import PERF_ANALYZER
from request_path import BATCHING, CONFIG

FLOOR = "grpc.aio floor"
# (name, CPU seconds, voluntary switches, involuntary switches) by thread id
Threads = dict[str, tuple[str, float, int, int]]


def threads(pid: int) -> Threads:
    ticks = os.sysconf("SC_CLK_TCK")
    found: Threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat, status = (task / "stat").read_text(), (task / "status").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        counts = dict(line.split(":\t") for line in status.splitlines() if ":\t" in line)
        found[task.name] = (
            stat[stat.index("(") + 1 : stat.rindex(")")],
            (int(fields[11]) + int(fields[12])) / ticks,
            int(counts["voluntary_ctxt_switches"]),
            int(counts["nonvoluntary_ctxt_switches"]),
        )
    return found


def executions(http_url: str | None) -> int:
    if http_url is None:
        return 0
    with urllib.request.urlopen(f"http://{http_url}/v2/models/mlp/stats") as answer:
        return int(json.load(answer)["model_stats"][0]["execution_count"])


@contextmanager
def server(
    subject: str, repository: Path, args: argparse.Namespace
) -> Iterator[tuple[int, str, str | None]]:
    """(pid, URL of `args.transport`, inferd's HTTP URL for its statistics) of the server."""
    if subject == FLOOR:
        port = free_port()
        code = f"import grpc_floor; grpc_floor.serve_grpc_aio({port}, False)"
        command = ["taskset", "-c", args.server_cpus, sys.executable, "-c", code]
        process = subprocess.Popen(command, cwd=Path(__file__).parent)
        try:
            time.sleep(3)
            yield process.pid, f"127.0.0.1:{port}", None
        finally:
            process.terminate()
            process.wait()
        return
    os.environ["PYTHONPATH"] = subject  # the server subprocess imports this tree
    with served(repository, "--log-verbose", "0", cpu=args.server_cpus) as inferd:
        url = inferd.grpc_url if args.transport == "grpc" else inferd.http_url
        yield inferd.process.pid, url, inferd.http_url


def measure(subject: str, repository: Path, args: argparse.Namespace) -> None:
    with server(subject, repository, args) as (pid, url, stats_url):
        command = [
            "taskset", "-c", args.client_cpus, PERF_ANALYZER, "-m", "mlp", "-u", url,
            "-i", args.transport, "-b", "1", "--concurrency-range", "32",
        ]  # fmt: skip
        warm_up = [*command, "--stability-percentage", "999", "--max-trials", "3"]
        warm_up += ["--measurement-interval", "1000"]
        rate = float(run(warm_up).split("throughput: ")[1].split()[0])
        count = int(rate * args.seconds)
        before, executed, start = threads(pid), executions(stats_url), time.perf_counter()
        run([*command, "--request-count", str(count)])
        elapsed = time.perf_counter() - start
        after, executed = threads(pid), executions(stats_url) - executed
    spent = {tid: after[tid][1] - before.get(tid, ("", 0.0, 0, 0))[1] for tid in after}
    batch = f", {count / executed:.2f} requests per batch" if executed else ""
    print(
        f"{subject}: {count / elapsed:,.0f}/s, {sum(spent.values()) * 1e6 / count:.0f} us CPU "
        f"per request{batch}"
    )
    for tid, (name, _, voluntary, involuntary) in sorted(after.items(), key=lambda t: -spent[t[0]]):
        if spent[tid] * 1e6 / count < 1:
            continue
        _, _, voluntary_before, involuntary_before = before.get(tid, ("", 0.0, 0, 0))
        print(
            f"  {name:<16} {spent[tid] * 1e6 / count:7.1f} us  switches per request: "
            f"{(voluntary - voluntary_before) / count:5.2f} voluntary, "
            f"{(involuntary - involuntary_before) / count:5.2f} involuntary"
        )


def run(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, check=True, text=True, timeout=600).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs="+", default=[str(Path(__file__).parent.parent / "src")])
    parser.add_argument("--floor", action="store_true", help="measure grpc.aio's floor too")
    parser.add_argument("--transport", choices=["grpc", "http"], default="grpc")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    args = parser.parse_args()
    subjects = [*([FLOOR] if args.floor and args.transport == "grpc" else []), *args.trees]
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        write_mlp_repository(
            repository, CONFIG.format(max_batch=MAX_BATCH, batching=BATCHING["on"])
        )
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number} of {args.rounds}", flush=True)
            for subject in subjects:
                measure(subject, repository, args)
                sys.stdout.flush()


if __name__ == "__main__":
    main()
