"""What one batch's round trip costs between the ingress process and an actor on another
(simulated) node: a plain Ray actor call next to a Ray Compiled Graph over the same actor.

    python benchmarks/cluster_channel.py                 # 1 KiB / 64 KiB / 4 MiB, 3 s a point
    python benchmarks/cluster_channel.py --seconds 5 --sizes 64
    python benchmarks/cluster_channel.py --part fault     # SIGKILL of the actor, 2 in flight

A Ray cluster of this script's own (`ray.cluster_utils.Cluster`: a head and one worker node on
the loopback address, as the cluster tests set it up); the actor runs on the worker node and
answers the batch it is given, packed as `wire.py` packs a remote instance's batch. Awaited from
asyncio as a scheduler awaits a remote instance, one batch at a time, interleaved over
`--rounds` rounds; p50 and p99 per batch in ms. The rows:

- `actor call`: `await actor.packed.remote(batch)`, as `RemoteInstance` calls its host;
- `compiled graph`: `await (await compiled.execute_async(batch))` on a graph of the same
  method, compiled with `enable_asyncio=True, _max_inflight_executions=2` (Ray runs a loop in
  the actor and passes the batch and answer through channels instead of one task per batch).

`--part fault` asks what a remote instance would have to handle: with two batches in flight on
the compiled graph (the first sleeping 0.5 s in the actor), the actor's process is killed
(SIGKILL; the actor has `max_restarts=-1, max_task_retries=0`, as hosts have); it prints what
each batch's future gives and when (waiting up to `FAULT_WAIT_S`), what a third batch gets,
how long the teardown takes, when the restarted actor answers a plain call, and how long
compiling a graph on it again takes.

Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import hop_parts
from hop_parts import OBJECT_STORE_BYTES, sweep, sweep_arguments
from inferd.backends.base import BatchRequest
from inferd.cluster.wire import pack_batch, unpack_answer

# Room for the largest batch: a compiled graph's channel that is too small is resized.
CHANNEL_BYTES = 5 * 1024 * 1024
# The bound on recovery after a SIGKILL: a batch's future waits no longer.
FAULT_WAIT_S = 10.0
# How long the restarted actor may take to answer a plain call before the script gives up.
RESTART_WAIT_S = 60.0


class Echo(hop_parts.Echo):
    """The hop benchmark's bare actor, with what the fault part asks of it."""

    def pid(self) -> int:
        return os.getpid()

    def sleep_then_echo(self, value: str) -> str:
        time.sleep(0.5 if value == "slow" else 0.0)
        return value


async def measure(sizes: list[int], seconds: float, rounds: int) -> None:
    from ray.dag import InputNode

    echo = on_worker()
    with InputNode() as batch:
        graph = echo.packed.bind(batch)
    compiled = graph.experimental_compile(
        enable_asyncio=True, _max_inflight_executions=2, _buffer_size_bytes=CHANNEL_BYTES
    )
    names = ["OUTPUT0"]
    requests = [BatchRequest(0, 1, "r")]

    def paths(inputs: dict[str, Any]) -> dict[str, Callable[[], Awaitable[object]]]:
        async def call() -> object:
            return unpack_answer(await echo.packed.remote(pack_batch(inputs, names, requests)))

        async def channel() -> object:
            future = await compiled.execute_async(pack_batch(inputs, names, requests))
            return unpack_answer(await future)

        return {"actor call": call, "compiled graph": channel}

    await sweep(paths, sizes, seconds, rounds)
    compiled.teardown()


def on_worker() -> Any:
    """The echo actor on the worker node, restarted by Ray as a host is."""
    import ray

    options = {"num_cpus": 0, "resources": {"worker": 0.01}}
    return ray.remote(Echo).options(max_restarts=-1, max_task_retries=0, **options).remote()


async def fault() -> None:
    from ray.dag import InputNode

    echo = on_worker()
    pid = await echo.pid.remote()

    def compile_graph() -> Any:
        with InputNode() as value:
            graph = echo.sleep_then_echo.bind(value)
        return graph.experimental_compile(enable_asyncio=True, _max_inflight_executions=2)

    compiled = compile_graph()
    print("before the kill:", await (await compiled.execute_async("ready")))
    in_flight = [await compiled.execute_async(value) for value in ("slow", "second")]
    await asyncio.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    async def outcome(label: str, future: Awaitable[object]) -> None:
        try:
            result = f"answered {await asyncio.wait_for(future, FAULT_WAIT_S)!r}"
        except BaseException as exc:  # what Ray raises is the finding
            result = f"raised {type(exc).__name__}: {str(exc)[:160]}"
        print(f"{label}: {result} after {time.monotonic() - killed:.2f} s")

    labels = ("batch in the actor", "batch queued behind it")
    for label, future in zip(labels, in_flight, strict=True):
        await outcome(label, future)
    try:
        await outcome("a batch sent after the kill", await compiled.execute_async("third"))
    except Exception as exc:
        print(f"a batch sent after the kill: refused, {type(exc).__name__}: {exc}")
    compiled.teardown()
    print(f"teardown done after {time.monotonic() - killed:.2f} s")
    while True:
        try:
            restarted = await asyncio.wait_for(echo.pid.remote(), FAULT_WAIT_S)
            break
        except Exception as exc:
            if time.monotonic() - killed > RESTART_WAIT_S:
                print(f"the restarted actor did not answer in {RESTART_WAIT_S:.0f} s: {exc!r}")
                return
            await asyncio.sleep(0.05)
    print(f"restarted actor (pid {restarted}) answers after {time.monotonic() - killed:.2f} s")
    start = time.monotonic()
    compiled = compile_graph()
    answer = await (await compiled.execute_async("again"))
    print(f"compiled again and answered {answer!r} in {time.monotonic() - start:.2f} s")
    compiled.teardown()


@contextmanager
def two_node_ray() -> Iterator[None]:
    """A head and one worker node (resource `worker`) of this script's own, on the loopback
    address, with the load average before and after."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray.cluster_utils import Cluster

    print(f"load average {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()}), Ray {ray.__version__}")
    node: dict[str, Any] = {"include_dashboard": False, "object_store_memory": OBJECT_STORE_BYTES,
                            "node_ip_address": "127.0.0.1"}  # fmt: skip
    cluster: Any = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, **node})
    try:
        cluster.add_node(num_cpus=1, resources={"worker": 1.0}, **node)
        cluster.wait_for_nodes()
        ray.init(
            address=cluster.address,
            runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}},
        )
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()
    print(f"load average {os.getloadavg()[0]:.2f} after")


def main() -> None:
    parser = sweep_arguments(__doc__)
    parser.add_argument("--part", choices=["latency", "fault"], default="latency")
    args = parser.parse_args()
    with two_node_ray():
        if args.part == "fault":
            asyncio.run(fault())
        else:
            asyncio.run(measure(args.sizes, args.seconds, args.rounds))


if __name__ == "__main__":
    main()
