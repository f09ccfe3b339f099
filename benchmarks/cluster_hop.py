"""What one batch costs on a remote instance, end to end over Ray, without a server or a client:
the cluster's `RemoteInstance.execute` against its `InstanceHost` actor (an ONNX Identity model),
awaited from asyncio as a scheduler awaits it, next to a bare Ray actor call with the same
payload (the floor Ray sets) and the in-process `ModelInstance` it replaces.

    python benchmarks/cluster_hop.py                 # 1 KiB / 64 KiB / 4 MiB, 3 s a point
    python benchmarks/cluster_hop.py --seconds 5 --sizes 64

One Ray node on this machine (1 CPU; the actors ask for none, so that all fit), started and
stopped here. Each point runs one batch at a time (one request a batch), interleaved over
`--rounds` rounds; p50 and p99 per batch in ms. The rows:

- `bare call`: an actor method that returns its argument dict, `await actor.m.remote(inputs)`;
- `bare, 3 args of arrays`: the same actor, called as a remote instance called its host before
  `wire.py` (the arrays, the output names, each request's `BatchRequest`; the outputs, a
  compute time and an incarnation back);
- `bare, packed (wire.py)`: the same, as a remote instance calls its host now (one argument,
  small arrays as bytes, requests as tuples), unpacked on both sides;
- `remote instance`: `RemoteInstance.execute` on an `InstanceHost` (what a scheduler awaits);
- `in-process`: `ModelInstance.execute` on the same model (the executor hop it replaces).

Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from hop_parts import OBJECT_STORE_BYTES, Echo, sweep, sweep_arguments
from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.backends.registry import BackendRegistry
from inferd.cluster.host import HostSpec, InstanceHost
from inferd.cluster.remote import Peers, RemoteInstance
from inferd.cluster.telemetry import BatchCounters, ClusterTelemetry
from inferd.cluster.wire import (
    pack_batch,
    unpack_answer,
)
from inferd.core.model_config import parse_pbtxt
from inferd.instances.instance import ModelInstance

CONFIG = """\
name: "identity" platform: "onnxruntime_onnx" max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""


def identity_model(folder: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "identity",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", "n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    version = folder / "identity" / "1"
    version.mkdir(parents=True)
    onnx.save(model, version / "model.onnx")
    return version


async def measure(version: Path, sizes: list[int], seconds: float, rounds: int) -> None:
    import ray

    config = parse_pbtxt(CONFIG)
    backend_name = "onnxruntime"
    device = Device(DeviceKind.CPU)
    spec = HostSpec(config.SerializeToString(), backend_name, "identity_0", device, str(version))
    host: Any = ray.remote(InstanceHost).options(num_cpus=0, max_task_retries=0).remote(spec)
    start = ray.get(host.started.remote())
    assert not start.failure, start.failure
    telemetry = ClusterTelemetry()
    counters = BatchCounters("identity", "1", "identity_0")
    peers = Peers("identity", False)
    remote = RemoteInstance("identity_0", device, host, peers, counters, telemetry)
    remote.incarnation = start.incarnation
    echo: Any = ray.remote(Echo).options(num_cpus=0).remote()
    loaded = BackendRegistry().get(backend_name).load(config, version)
    local = ModelInstance("local", device, loaded.create_instance(device, "local"))

    names = ["OUTPUT0"]
    requests = [BatchRequest(0, 1, "r")]

    def paths(inputs: dict[str, Any]) -> dict[str, Callable[[], Awaitable[object]]]:
        async def arrays() -> object:
            return await echo.as_arrays.remote(inputs, names, requests)

        async def packed() -> object:
            return unpack_answer(await echo.packed.remote(pack_batch(inputs, names, requests)))

        return {
            "bare call": lambda: echo.echo.remote(inputs),
            "bare, 3 args of arrays": arrays,
            "bare, packed (wire.py)": packed,
            "remote instance": lambda: remote.execute(inputs, names, requests),
            "in-process": lambda: local.execute(inputs, names, requests),
        }

    await sweep(paths, sizes, seconds, rounds)
    local.close()
    remote.close()


@contextmanager
def local_ray(object_store_bytes: int = OBJECT_STORE_BYTES) -> Iterator[None]:
    """A one-node Ray of this script's own (1 CPU, on the loopback address), with the load
    average before and after."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    print(f"load average {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()}), Ray {ray.__version__}")
    ray.init(
        "local",  # a Ray of its own, even where another runs on this machine
        num_cpus=1,
        include_dashboard=False,
        object_store_memory=object_store_bytes,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}},
    )
    try:
        yield
    finally:
        ray.shutdown()
    print(f"load average {os.getloadavg()[0]:.2f} after")


def main() -> None:
    parser = sweep_arguments(__doc__)
    args = parser.parse_args()
    with local_ray(), tempfile.TemporaryDirectory() as folder:
        version = identity_model(Path(folder))
        asyncio.run(measure(version, args.sizes, args.seconds, args.rounds))


if __name__ == "__main__":
    main()
