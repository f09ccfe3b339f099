"""What a sequence model's implicit state costs on a remote instance: the state travelling with
every batch (kept by the scheduler, as inferd did before) against the state held by the host
(`scheduling/held_states.py`), with the real `SequenceBatcher`, `RemoteInstance` and
`InstanceHost`, without a server or a client.

    python benchmarks/cluster_state.py                   # 64 KiB of state, 1 and 8 sequences
    python benchmarks/cluster_state.py --state-kib 1 64 1024 --seconds 6

One Ray node on this machine (1 CPU; the actors ask for none), started and stopped here. The
model (ONNX) adds each step's INPUT to every element of an FP32 state and answers its largest
element. Each point runs N live sequences, one step of each at a time (so each batch holds N
rows), interleaving the two placements of the state over `--rounds` rounds. Per batch: p50 and
p99 in ms, and the bytes of arrays that crossed to the host and back.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from cluster_hop import local_ray
from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.cluster.host import HostSpec, InstanceHost
from inferd.cluster.remote import Peers, RemoteInstance
from inferd.cluster.telemetry import BatchCounters, ClusterTelemetry
from inferd.core.model_config import parse_pbtxt
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import ExecutionResult
from inferd.scheduling.sequence import SequenceBatcher
from inferd.scheduling.sequence_settings import SequenceSettings

CONFIG = """\
name: "state" platform: "onnxruntime_onnx" max_batch_size: 8
input [ { name: "INPUT", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "OUTPUT", data_type: TYPE_FP32, dims: [ 1 ] } ]
sequence_batching {
  max_sequence_idle_microseconds: 600000000
  state [ { input_name: "INPUT_STATE", output_name: "OUTPUT_STATE", data_type: TYPE_FP32,
            dims: [ %d ] } ]
}
"""
OBJECT_STORE_BYTES = 200 * 1024 * 1024


class Metered(RemoteInstance):
    """A remote instance that counts the bytes of the arrays it sends and gets back."""

    sent = 0
    received = 0

    async def call(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> ExecutionResult:
        result = await super().call(inputs, output_names, requests)
        self.sent += sum(array.nbytes for array in inputs.values())
        assert isinstance(result.outputs, dict)
        self.received += sum(array.nbytes for array in result.outputs.values())
        return result


def state_model(folder: Path, elements: int) -> Path:
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT_STATE", "INPUT"], ["OUTPUT_STATE"]),
            helper.make_node("ReduceMax", ["OUTPUT_STATE"], ["OUTPUT"], axes=[1], keepdims=1),
        ],
        "state",
        [
            helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("INPUT_STATE", TensorProto.FLOAT, ["batch", elements]),
        ],
        [
            helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("OUTPUT_STATE", TensorProto.FLOAT, ["batch", elements]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    version = folder / f"state_{elements}" / "1"
    version.mkdir(parents=True)
    onnx.save(model, version / "model.onnx")
    return version


class Point:
    """One placement of the state for one model: a host, and a batcher over it."""

    def __init__(self, version: Path, config_text: str, held: bool) -> None:
        import ray

        config = parse_pbtxt(config_text)
        self.settings = SequenceSettings.from_config(config, version.parent)
        device = Device(DeviceKind.CPU)
        spec = HostSpec(
            config.SerializeToString(),
            "onnxruntime",
            "state_0",
            device,
            str(version),
            sequence=self.settings if held else None,
        )
        options = {"num_cpus": 0, "max_task_retries": 0}
        self.host: Any = ray.remote(InstanceHost).options(**options).remote(spec)
        start = ray.get(self.host.started.remote())
        assert not start.failure, start.failure
        counters = BatchCounters("state", "1", "state_0")
        self.instance = Metered(
            "state_0", device, self.host, Peers("state", True), counters, ClusterTelemetry(),
            holds_states=held,
        )  # fmt: skip
        self.instance.incarnation = start.incarnation
        self.batcher = SequenceBatcher([self.instance], self.settings, ["OUTPUT"])
        self.batcher.start()
        self.started: set[int] = set()

    async def round(self, sequences: int) -> float:
        """One step of each of `sequences` sequences, at once: seconds."""
        start = time.perf_counter()
        steps = []
        for key in range(1, sequences + 1):
            parameters: dict[str, Any] = {"sequence_id": key}
            parameters["sequence_start"] = key not in self.started
            self.started.add(key)
            value = np.ones((1, 1), np.float32)
            request = InferRequest("state", {"INPUT": value}, parameters=parameters)
            steps.append(self.batcher.submit(request))
        await asyncio.gather(*steps)
        return time.perf_counter() - start

    async def close(self) -> None:
        await self.batcher.stop()
        self.instance.close()


async def measure(
    folder: Path, sizes: list[int], counts: list[int], seconds: float, rounds: int
) -> None:
    rows: dict[tuple[int, int, str], list[float]] = {}
    traffic: dict[tuple[int, int, str], tuple[int, int]] = {}
    for kib in sizes:
        elements = kib * 256
        version = state_model(folder, elements)
        text = CONFIG % elements
        points = {
            "state travels": Point(version, text, held=False),
            "host holds it": Point(version, text, held=True),
        }
        for count in counts:
            for point in points.values():  # start the sequences, warm up
                for _ in range(5):
                    await point.round(count)
            for _ in range(rounds):
                for label, point in points.items():
                    instance = point.instance
                    executions, sent, received = (
                        instance.counters.executions, instance.sent, instance.received,
                    )  # fmt: skip
                    deadline = time.perf_counter() + seconds / rounds
                    samples = rows.setdefault((kib, count, label), [])
                    while time.perf_counter() < deadline:
                        samples.append(await point.round(count))
                    batches = max(1, instance.counters.executions - executions)
                    traffic[(kib, count, label)] = (
                        (instance.sent - sent) // batches,
                        (instance.received - received) // batches,
                    )
        for point in points.values():
            await point.close()
    print(
        f"{'state':>9} {'seqs':>5}  {'where the state is':<15} {'batches':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'sent/batch':>11} {'back/batch':>11}"
    )
    for (kib, count, label), samples in rows.items():
        p50, p99 = np.percentile(samples, [50, 99]) * 1000
        sent, back = traffic[(kib, count, label)]
        print(
            f"{kib:>5} KiB {count:>5}  {label:<15} {len(samples):>8} {p50:>8.3f} {p99:>8.3f} "
            f"{sent:>11,} {back:>11,}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per point, all rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--state-kib", type=int, nargs="+", default=[64], help="per sequence")
    parser.add_argument("--sequences", type=int, nargs="+", default=[1, 8], help="at most 8")
    args = parser.parse_args()
    with local_ray(OBJECT_STORE_BYTES), tempfile.TemporaryDirectory() as folder:
        asyncio.run(
            measure(Path(folder), args.state_kib, args.sequences, args.seconds, args.rounds)
        )


if __name__ == "__main__":
    main()
