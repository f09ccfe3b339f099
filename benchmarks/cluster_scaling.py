"""Cluster mode on Ray: what a remote instance costs, how instances scale over nodes, and how
fast serving comes back after a killed host or a lost node.

    python benchmarks/cluster_scaling.py                  # all three parts, 5 s per point
    python benchmarks/cluster_scaling.py --quick          # 2 s per point (about 4 minutes)
    python benchmarks/cluster_scaling.py --part overhead  # or scaling, recovery (several allowed)

1. Overhead: an ONNX Identity model (FP32, 1 KiB / 64 KiB / 4 MiB a request) served by a
   single-node inferd and by `--cluster local:1` with its instance forced onto a Ray actor
   (`inferd.cluster.in_process: false`), the same client (tritonclient.http, binary tensors,
   one process per concurrent request) against both, at concurrency 1 (one request is one
   batch) and `--concurrency`. Per request: the client's latency. Per batch ("hop"): the
   server's compute_input + compute_output, which for a remote instance is the whole Ray
   round trip (the host reports only its backend time) and for an in-process one the
   executor hop; mean from the statistics, p50 from the request trace (`--log-verbose 1`,
   on for both). Under concurrency a remote hop also holds the wait behind the batch the
   actor is running (two are in flight). For reference, a bare Ray actor call with the
   same payload, awaited from asyncio, on a cluster made the same way.
2. Scaling: one `--cluster local:4` server holding the same model at 1, 2 and 4 instances
   (STRICT_SPREAD, in_process false: one actor per simulated node), each loaded in turn by a
   closed loop of `--clients-per-node` x instances clients: (a) a device-bound stand-in
   (Python backend sleeping 10 ms per batch, no dynamic batching) and (b) the example MLP on
   ONNX Runtime (CPU-bound, one intra-op thread, dynamic batching).
3. Recovery (the stand-in answers with its process id): SIGKILL of the only instance's host
   (its pid from the server's log), then the time until its restarted host answers; and on a
   cluster started here (head without CPUs, two workers, health checks 1 s x 5 like the
   tests), the loss of the worker that holds the only instance, then the time until a host
   on the other worker answers. One client polls every 20 ms meanwhile.

The simulated nodes share this machine's cores with the server and the clients: scaling of
CPU-bound work needs a machine with more cores than nodes. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import tritonclient.http as httpclient
from onnx import TensorProto
from tests.integration.model_files import write
from tests.integration.ray_cluster import (
    OBJECT_STORE_BYTES,
    SYSTEM_CONFIG,
    LocalRayCluster,
    placed_instances,
)
from tests.integration.server import RunningServer, running_server
from tritonclient.utils import InferenceServerException

from common import Figures, generate_models, load_from_processes, write_mlp_repository

REMOTE = (
    'parameters { key: "inferd.cluster.in_process" value { string_value: "false" } }\n'
    'parameters { key: "inferd.cluster.placement" value { string_value: "STRICT_SPREAD" } }\n'
)
IDENTITY = """\
name: "identity" platform: "onnxruntime_onnx" max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 500 }
"""
# Answers with its process id, so that recovery is timed to the first answer of a new host.
SLEEPER_CODE = """
import os
import time

import numpy as np

class InferdModel:
    def execute(self, batch):
        time.sleep(0.01)  # a device busy for 10 ms a batch, the CPU idle meanwhile
        return {"OUTPUT": np.full_like(batch.inputs["INPUT"], os.getpid())}
"""
SLEEPER = """\
name: "{name}" backend: "python" max_batch_size: 8
input [ {{ name: "INPUT", data_type: TYPE_FP32, dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT", data_type: TYPE_FP32, dims: [ 4 ] }} ]
instance_group [ {{ count: {count}, kind: KIND_CPU }} ]
"""
MLP = """\
name: "{name}" platform: "onnxruntime_onnx" max_batch_size: 32
input [ {{ name: "input", data_type: TYPE_FP32, dims: [ 256 ] }} ]
output [ {{ name: "output", data_type: TYPE_FP32, dims: [ 256 ] }} ]
instance_group [ {{ count: {count}, kind: KIND_CPU }} ]
dynamic_batching {{ max_queue_delay_microseconds: 500 }}
parameters {{ key: "intra_op_thread_count" value {{ string_value: "1" }} }}
"""
SIZES = {"1 KiB": 256, "64 KiB": 16 * 1024, "4 MiB": 1024 * 1024}  # FP32 values a request
START_TIMEOUT_S = 300  # simulated nodes start slowly on a loaded machine


def http_call(url: str, model: str, names: tuple[str, str], shape: list[int]) -> Callable[[], Any]:
    """`make_call` for load_from_processes: one binary-tensor request, errors printed (a
    raising client process would leave the load waiting for its figures)."""

    def make_call() -> Callable[[], Any]:
        client = httpclient.InferenceServerClient(url, network_timeout=60)
        data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        tensor = httpclient.InferInput(names[0], shape, "FP32")
        tensor.set_data_from_numpy(data, binary_data=True)
        output = [httpclient.InferRequestedOutput(names[1], binary_data=True)]

        def call() -> Any:
            try:
                return client.infer(model, [tensor], outputs=output)
            except InferenceServerException as exc:
                print(f"  {model}: {exc}")
                return None

        return call

    return make_call


def batch_costs(url: str, model: str) -> tuple[int, int, int]:
    """(requests, batches, ns of compute_input + compute_output over the batches) so far.
    Read with urllib: tritonclient.http starts gevent, after which forked clients hang."""
    with urllib.request.urlopen(f"http://{url}/v2/models/{model}/stats", timeout=30) as reply:
        row = json.load(reply)["model_stats"][0]
    hop = sum(
        int(b["compute_input"]["ns"]) + int(b["compute_output"]["ns"]) for b in row["batch_stats"]
    )
    return int(row["inference_stats"]["success"]["count"]), int(row["execution_count"]), hop


def repeat(make_call: Callable[[], Callable[[], Any]], times: int) -> None:
    call = make_call()
    for _ in range(times):
        call()


@contextmanager
def serving(repository: Path, *args: str) -> Iterator[RunningServer]:
    with running_server(repository, *args, timeout=START_TIMEOUT_S) as server:
        yield server


@dataclass
class Point:
    figures: Figures
    rows: float  # per batch, mean
    hop_mean_ms: float  # compute_input + compute_output per batch, from the statistics
    hop_p50_ms: float  # the same over the requests' trace lines (--log-verbose 1), or nan


# A `--log-verbose` request line's transfer times, in µs.
TRACE = re.compile(r"request model=(\S+) .* compute_input=([\d.]+) .* compute_output=([\d.]+)")


def hops_ms(lines: list[str], model: str) -> list[float]:
    found = (TRACE.search(line) for line in lines)
    return [(float(m[2]) + float(m[3])) / 1e3 for m in found if m is not None and m[1] == model]


def measure(
    server: RunningServer,
    model: str,
    names: tuple[str, str],
    shape: list[int],
    clients: int,
    seconds: float,
    label: str,
) -> Point:
    make_call = http_call(server.http_url, model, names, shape)
    # The first calls of a host (connections, object store) cost more; made in a child, as
    # the load's clients are forked from this process.
    warm_up = multiprocessing.get_context("fork").Process(target=repeat, args=(make_call, 10))
    warm_up.start()
    warm_up.join()
    before, first_line = batch_costs(server.http_url, model), len(server.log)
    figures = load_from_processes(make_call, clients, seconds, label)
    after = batch_costs(server.http_url, model)
    requests, batches, hop_ns = (a - b for a, b in zip(after, before, strict=True))
    hops = hops_ms(server.log[first_line:], model)
    return Point(
        figures,
        requests / max(batches, 1),
        hop_ns / max(batches, 1) / 1e6,
        float(np.median(hops)) if hops else float("nan"),
    )


def raw_ray(seconds: float, results: Any) -> None:
    """p50 ms of an actor call per input size, awaited from asyncio as the ingress awaits its
    hosts, on a cluster made as `--cluster local:1` makes it (run in a spawned process)."""
    import asyncio

    from inferd.cluster.connect import connect

    class Echo:  # defined here, so that Ray ships the class itself to its worker
        def execute(self, inputs: dict[str, Any]) -> tuple[dict[str, Any], int]:
            return inputs, 0

    async def run(echo: Any) -> dict[str, float]:
        figures = {}
        for size, values in SIZES.items():
            inputs = {"INPUT0": np.ones((1, values), np.float32)}
            for _ in range(10):
                await echo.execute.remote(inputs)
            latencies, stop = [], time.perf_counter() + seconds
            while (begin := time.perf_counter()) < stop:
                await echo.execute.remote(inputs)
                latencies.append((time.perf_counter() - begin) * 1e3)
            figures[size] = float(np.median(latencies))
        return figures

    connection = connect("local:1", quiet=True)
    try:
        import ray

        results.put(asyncio.run(run(ray.remote(Echo).options(num_cpus=1).remote())))
    except Exception as exc:  # reported, so that the benchmark goes on without the reference
        results.put(repr(exc))
    finally:
        connection.close()


def raw_ray_p50(seconds: float) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")  # Ray in a process that never forks
    results = context.Queue()
    process = context.Process(target=raw_ray, args=(seconds, results))
    process.start()
    figures = results.get(timeout=START_TIMEOUT_S)
    process.join()
    if isinstance(figures, str):
        print(f"raw Ray reference failed: {figures}")
        return dict.fromkeys(SIZES, float("nan"))
    return dict(figures)


def overhead(root: Path, seconds: float, concurrency: int) -> None:
    repository = root / "overhead"
    generate_models.identity_model(
        repository / "identity" / "1" / "model.onnx", TensorProto.FLOAT, ["batch", "n"]
    )
    (repository / "identity" / "config.pbtxt").write_text(IDENTITY + REMOTE)
    runs: dict[tuple[str, str, int], Point] = {}
    for where, args in (("single node", ()), ("remote", ("--cluster", "local:1"))):
        # Verbose logging traces every request's transfer times (the same cost to both).
        with serving(repository, "--log-verbose", "1", *args) as server:
            for size, values in SIZES.items():
                for clients in (1, concurrency):
                    runs[where, size, clients] = measure(
                        server,
                        "identity",
                        ("INPUT0", "OUTPUT0"),
                        [1, values],
                        clients,
                        seconds,
                        f"{where} {size} x{clients}",
                    )
    ray_p50 = raw_ray_p50(seconds)
    print("\n1. Overhead of a remote instance (--cluster local:1, in_process false)")
    print(
        f"{'input':<8}{'conc':>5} {'':<12}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'rows/batch':>11}{'hop ms/batch: mean':>19}{'p50':>9}"
    )
    for size in SIZES:
        for clients in (1, concurrency):
            local, remote = runs["single node", size, clients], runs["remote", size, clients]
            for where, point in (("single node", local), ("remote", remote)):
                fig = point.figures
                print(
                    f"{size:<8}{clients:>5} {where:<12}{fig.throughput:9.1f}"
                    f"{fig.percentile(50):9.2f}{fig.percentile(99):9.2f}{point.rows:11.2f}"
                    f"{point.hop_mean_ms:19.3f}{point.hop_p50_ms:9.3f}"
                )
            ratio = remote.figures.throughput / local.figures.throughput
            latency = remote.figures.percentile(50) - local.figures.percentile(50)
            print(
                f"{'':<14}remote/single: throughput {ratio:.3f}x, p50 {latency:+.2f} ms a "
                f"request, hop {remote.hop_p50_ms - local.hop_p50_ms:+.3f} ms a batch (p50)"
            )
        print(f"{size:<8} raw Ray actor call, same payload, asyncio: p50 {ray_p50[size]:.3f} ms")


def scaling(root: Path, args: argparse.Namespace, seconds: float) -> None:
    """Part 2, and the SIGKILL half of part 3 on the same server."""
    repository, nodes, parts = root / "scaling", args.nodes, args.part
    for count in nodes:
        name = f"sleeper_{count}"
        write(repository, name, SLEEPER_CODE, SLEEPER.format(name=name, count=count) + REMOTE)
        name = f"mlp_{count}"
        config = MLP.format(name=name, count=count) + REMOTE
        write_mlp_repository(root / name, config)
        (root / name / "mlp").rename(repository / name)
    with serving(repository, "--cluster", f"local:{max(nodes)}") as server:
        if "scaling" in parts:
            scale(server, seconds, args.clients_per_node, nodes, args.rounds)
        if "recovery" in parts:
            print("\n3. Recovery")
            kill_host(server, f"sleeper_{min(nodes)}")


def scale(
    server: RunningServer, seconds: float, per_node: int, nodes: list[int], rounds: int
) -> None:
    """The node counts in turn, `rounds` times over (a load that drifts then weighs on every
    count alike); ratios to 1 node within each round, and of the medians."""
    print(
        f"\n2. Scaling over simulated nodes (--cluster local:{max(nodes)}, one instance "
        f"per node, STRICT_SPREAD, in_process false, {per_node} clients per node)"
    )
    print(
        f"{'model':<28}{'round':>6}{'nodes':>6}{'clients':>8}{'req/s':>9}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'rows/batch':>11}{'vs 1 node':>10}"
    )
    for kind, names, width in (
        ("sleeper", ("INPUT", "OUTPUT"), 4),
        ("mlp", ("input", "output"), 256),
    ):
        label = {"sleeper": "(a) sleeps 10 ms a batch", "mlp": "(b) MLP, ONNX Runtime"}[kind]
        rates: dict[int, list[float]] = {count: [] for count in nodes}
        for round_ in range(1, rounds + 1):
            for count in nodes:
                clients = per_node * count
                point = measure(
                    server, f"{kind}_{count}", names, [1, width], clients, seconds, label
                )
                fig = point.figures
                rates[count].append(fig.throughput)
                print(
                    f"{label:<28}{round_:>6}{count:>6}{clients:>8}{fig.throughput:9.1f}"
                    f"{fig.percentile(50):9.2f}{fig.percentile(99):9.2f}{point.rows:11.2f}"
                    f"{fig.throughput / rates[nodes[0]][-1]:9.2f}x"
                )
        medians = {count: float(np.median(values)) for count, values in rates.items()}
        print(
            f"{label:<28} median req/s: "
            + ", ".join(
                f"{count} node(s) {rate:.1f} ({rate / medians[nodes[0]]:.2f}x)"
                for count, rate in medians.items()
            )
        )


@dataclass
class Recovery:
    seconds: float = float("nan")  # until an answer came from a process other than the old
    failed: int = 0
    stale: int = 0  # answered by the old process
    longest: float = 0.0  # the slowest request meanwhile, seconds

    def __str__(self) -> str:
        return (
            f"{self.seconds:.2f} s ({self.stale} answers from the old host, {self.failed} "
            f"failed, slowest request {self.longest:.2f} s)"
        )


def served_by_another(url: str, model: str, pid: int, within: float) -> Recovery:
    """How long until `model` answers from a process other than `pid` (tried every 20 ms)."""
    client = httpclient.InferenceServerClient(url, network_timeout=within)
    tensor = httpclient.InferInput("INPUT", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32), binary_data=True)
    recovery, start = Recovery(), time.monotonic()
    while (begin := time.monotonic()) - start < within:
        try:
            answer = client.infer(model, [tensor]).as_numpy("OUTPUT")
        except InferenceServerException:
            recovery.failed += 1
        else:
            if int(answer[0, 0]) != pid:
                recovery.seconds = time.monotonic() - start
                break
            recovery.stale += 1
        finally:
            recovery.longest = max(recovery.longest, time.monotonic() - begin)
        time.sleep(0.02)
    return recovery


def kill_host(server: RunningServer, model: str) -> None:
    """SIGKILL the host of `model`'s only instance, then time its next successful request."""
    name, (node, pid) = next(
        (name, placed)
        for name, placed in placed_instances(server.log_text()).items()
        if name.startswith(model + "_")
    )
    os.kill(pid, signal.SIGKILL)
    recovery = served_by_another(server.http_url, model, pid, 60)
    print(
        f"SIGKILL of host {name} (pid {pid}, node {node[:8]}), the only instance: answered "
        f"by its restarted host after {recovery} (target <= 10 s)"
    )


def node_loss(root: Path) -> None:
    """A cluster of our own, as `--cluster local` keeps its nodes inside the server."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from ray.cluster_utils import Cluster

    repository = root / "node_loss"
    write(repository, "sleeper", SLEEPER_CODE, SLEEPER.format(name="sleeper", count=1) + REMOTE)
    # The head has no CPU, so the instance's bundle can only go to (and move between) workers.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "node_ip_address": "127.0.0.1",
            "object_store_memory": OBJECT_STORE_BYTES,
            "_system_config": SYSTEM_CONFIG,
        },
    )
    try:
        handle = LocalRayCluster(cluster, cluster.head_node.node_id)
        for _ in range(2):
            handle.add_worker()
        cluster.wait_for_nodes()
        with serving(repository, "--cluster", handle.address) as server:
            _, (node_id, pid) = placed_instances(server.log_text()).popitem()
            node = next(n for n in cluster.worker_nodes if n.node_id == node_id)
            cluster.remove_node(node, allow_graceful=False)
            recovery = served_by_another(server.http_url, "sleeper", pid, 120)
            ready = httpclient.InferenceServerClient(server.http_url).is_model_ready("sleeper")
        print(
            f"loss of node {node_id[:8]}, holding the only instance: answered from the other "
            f"worker after {recovery}; model {'READY' if ready else 'not READY'} then "
            "(health checks 1 s x 5)"
        )
    finally:
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        nargs="+",
        choices=["overhead", "scaling", "recovery"],
        default=["overhead", "scaling", "recovery"],
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per point")
    parser.add_argument("--concurrency", type=int, default=4, help="overhead under load")
    parser.add_argument("--clients-per-node", type=int, default=3)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=3, help="of the scaling sweep")
    parser.add_argument("--quick", action="store_true", help="2 s per point, 1 round")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else args.seconds
    if args.quick:
        args.rounds = 1
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if "overhead" in args.part:
            overhead(root, seconds, args.concurrency)
        if "scaling" in args.part or "recovery" in args.part:
            scaling(root, args, seconds)
        if "recovery" in args.part:
            node_loss(root)


if __name__ == "__main__":
    main()
