"""Where a request's server CPU goes: inferd under perf_analyzer load, sampled with py-spy.

    python benchmarks/request_profile.py [--transport http|grpc] [--batching off|on]
                                         [--concurrency 32] [--seconds 10] [--rate 500]

The example MLP (one instance, one intra-op thread) served by inferd pinned to `--server-cpus`,
loaded by `perf_analyzer` (batch 1, binary tensors) from `--client-cpus`. While the load runs,
py-spy samples every thread of the server, and the server's CPU time is read per thread from
/proc. Each sample is put in a stage by its deepest frame that belongs to a known part of the
request path (decode, validation, queueing, hand-offs, statistics, model, encode, uvicorn or
grpc, ...); samples of a thread waiting for work (epoll, a queue) are idle and dropped. A
stage's cost per request is its share of a thread's busy samples times that thread's CPU time,
divided by the requests served in the window. Needs `py-spy` (ptrace allowed).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from baseline_run import MAX_BATCH
from common import served, write_mlp_repository
from perf_analyzer_run import PERF_ANALYZER
from request_path import BATCHING, CONFIG

# (stage, pattern on "function (file)") tried from the innermost frame outwards; first match wins.
STAGES: list[tuple[str, re.Pattern[str]]] = [
    (stage, re.compile(pattern))
    for stage, pattern in [
        ("model (ONNX Runtime)", r"onnxruntime/"),
        ("statistics and metrics", r"inferd/metrics/|core/statistics\.py|_batch_reporter"),
        ("validation", r"engine/request_checks\.py|core/config_checks\.py"),
        (
            "decode",
            r"decode_|_decode|_binary_input|array_from_bytes|_read_body|loads \(|_tensor_header"
            r"|_array_from|http/known_headers\.py",
        ),
        (
            "encode",
            r"encode_|raw_bytes|raw_contents|serialize_|json_data|_respond"
            r"|http/binary_answers\.py|grpc/unary_headers\.py",
        ),
        ("hand-offs (loop <-> instance thread)", r"instances/instance\.py"),
        ("queueing and batching", r"inferd/scheduling/"),
        ("engine (routing to a model)", r"inferd/engine/"),
        ("frontend (routing, headers)", r"inferd/frontends/"),
        ("uvicorn / httptools", r"uvicorn/|httptools"),
        ("grpc.aio", r"grpc/|grpc\._cython"),
        ("asyncio / uvloop", r"asyncio/|uvloop/"),
    ]
]
# Innermost frames of a thread with nothing to do.
IDLE = re.compile(
    r"^(Runner\.run|ModelInstance\._serve|_worker|_poll_wrapper|Thread\.run|select|wait) "
)


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, pattern in STAGES:
            if pattern.search(frame):
                return stage
    return "other"


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of `pid`, by thread id."""
    ticks = 100.0
    seconds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds[task.name] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def served_requests(http_url: str) -> int:
    with urllib.request.urlopen(f"http://{http_url}/v2/models/mlp/stats") as answer:
        stats = json.load(answer)["model_stats"][0]
    return int(stats["inference_stats"]["success"]["count"])


def profile(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        config = CONFIG.format(max_batch=MAX_BATCH, batching=BATCHING[args.batching])
        write_mlp_repository(repository, config)
        with served(repository, cpu=args.server_cpus) as server:
            url = server.grpc_url if args.transport == "grpc" else server.http_url
            load = subprocess.Popen(
                [
                    "taskset", "-c", args.client_cpus, PERF_ANALYZER, "-m", "mlp", "-u", url,
                    "-i", args.transport, "--concurrency-range", str(args.concurrency),
                    "--measurement-interval", str(int(args.seconds * 1000) + 4000),
                    "--stability-percentage", "100", "--max-trials", "3",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(3)
            pid = server.process.pid
            samples_file = repository / "samples.txt"
            cpu_before, requests_before = thread_cpu_seconds(pid), served_requests(server.http_url)
            subprocess.run(
                ["py-spy", "record", "-r", str(args.rate), "-d", str(args.seconds), "-f", "raw",
                 "-o", str(samples_file), "-p", str(pid), "--threads", "--idle", "--nonblocking"],
                check=True, capture_output=True,
            )  # fmt: skip
            cpu_after, requests_after = thread_cpu_seconds(pid), served_requests(server.http_url)
            load.terminate()
            load.wait()
            cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
            print_breakdown(samples_file, cpu, requests_after - requests_before, args)


def print_breakdown(
    samples_file: Path, cpu: dict[str, float], requests: int, args: argparse.Namespace
) -> None:
    busy: dict[str, Counter[str]] = {}
    names: dict[str, str] = {}
    for line in samples_file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread, *frames = stack.split(";")
        tid, name = re.fullmatch(r"thread \((\w+)\): ?(.*)", thread.strip()).groups()  # type: ignore[union-attr]
        names[str(int(tid, 0))] = name
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in frames]
        if not frames or IDLE.match(frames[-1]):
            continue
        busy.setdefault(str(int(tid, 0)), Counter())[stage_of(frames)] += int(count)
    per_stage: Counter[str] = Counter()
    for tid, stages in busy.items():
        seconds = cpu.get(tid, 0.0)
        total = sum(stages.values())
        for stage, count in stages.items():
            per_stage[stage] += seconds * count / total
    total_us = sum(cpu.values()) * 1e6 / requests
    print(
        f"{args.transport}, batching {args.batching}, c={args.concurrency}: {requests} requests "
        f"in {args.seconds} s, server CPU {total_us:.0f} µs per request"
    )
    for tid, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        if seconds > 0:
            name = names.get(tid, "(no Python)")
            print(f"  thread {tid:>7} {name:<24} {seconds * 1e6 / requests:8.1f} µs/request")
    print(f"\n  {'stage':<40} {'µs/request':>10}")
    for stage, seconds in per_stage.most_common():
        print(f"  {stage:<40} {seconds * 1e6 / requests:10.1f}")
    print(f"  {'(not sampled: threads without Python)':<40} "
          f"{total_us - sum(per_stage.values()) * 1e6 / requests:10.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["http", "grpc"], default="http")
    parser.add_argument("--batching", choices=list(BATCHING), default="off")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    profile(parser.parse_args())


if __name__ == "__main__":
    main()
