"""A real Ray cluster on this machine for the cluster tests: a head and two worker nodes.

Started with `ray.cluster_utils.Cluster` (never `ray stop`, which would kill every Ray on the
machine), on the loopback address, without a dashboard, with small object stores and with
health checks of 1 s x 5: faster ones mark busy nodes dead on a loaded 2-core machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

OBJECT_STORE_BYTES = 80 * 1024 * 1024
SYSTEM_CONFIG = {
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 5,
    "enable_worker_prestart": False,
}
# "instance NAME runs on node ID (pid PID)", as the server logs each remote instance.
PLACED = re.compile(r"instance (\S+) runs on node (\w+) \(pid (\d+)\)")


@dataclass
class LocalRayCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    head_id: str

    @property
    def address(self) -> str:
        address: str = self.cluster.address
        return address

    def add_worker(self, num_gpus: int = 0, **resources: float) -> Any:
        """A worker node; `num_gpus` are logical GPUs (Ray hands them out, and sets each
        actor's CUDA_VISIBLE_DEVICES, without a device behind them)."""
        return self.cluster.add_node(
            num_cpus=8,
            num_gpus=num_gpus,
            resources=resources,
            object_store_memory=OBJECT_STORE_BYTES,
            node_ip_address="127.0.0.1",
        )


@contextmanager
def ray_cluster(workers: int = 2) -> Iterator[LocalRayCluster]:
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 8,
            "resources": {"head": 1.0},
            "include_dashboard": False,
            "object_store_memory": OBJECT_STORE_BYTES,
            "node_ip_address": "127.0.0.1",
            "_system_config": SYSTEM_CONFIG,
        },
        shutdown_at_exit=True,
    )
    handle = LocalRayCluster(cluster, cluster.head_node.node_id)
    try:
        for index in range(workers):
            handle.add_worker(**{f"worker_{index}": 1.0})
        cluster.wait_for_nodes()
        yield handle
    finally:
        cluster.shutdown()


def placed_instances(log: str) -> dict[str, tuple[str, int]]:
    """Remote instance name -> (node id, host pid), from a server's log (the latest line
    for each, as a restarted host logs nothing new)."""
    return {name: (node, int(pid)) for name, node, pid in PLACED.findall(log)}


# A Python model that answers when its batch ran and in which process, so a test can tell
# whether two hosts ran at once: its output SPAN is [start, end, pid] per row (FP64, dims [3]),
# from an INPUT of FP32 [4].
SPAN_MODEL = """
import os
import time
import numpy as np

class InferdModel:
    def execute(self, batch):
        start = time.time()
        time.sleep(0.3)
        span = [start, time.time(), os.getpid()]
        return {"SPAN": np.array([span] * len(batch.inputs["INPUT"]), np.float64)}
"""


def hosts_ran_at_once(url: str, model: str, requests: int) -> list[Any]:
    """Sends `requests` requests to a SPAN_MODEL at once, up to 5 times, until two of them
    ran at once in two processes; the spans of the last round, or AssertionError."""
    import numpy as np
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url, concurrency=requests)
    spans: list[Any] = []
    try:
        for _ in range(5):  # a round can miss by chance when one request reaches it late
            value = httpclient.InferInput("INPUT", [1, 4], "FP32")
            value.set_data_from_numpy(np.ones((1, 4), np.float32))
            pending = [client.async_infer(model, [value]) for _ in range(requests)]
            spans = [request.get_result().as_numpy("SPAN")[0] for request in pending]
            if any(
                pid_a != pid_b and start_a < end_b and start_b < end_a
                for start_a, end_a, pid_a in spans
                for start_b, end_b, pid_b in spans
            ):
                return spans
    finally:
        client.close()
    raise AssertionError(f"no two hosts of '{model}' ever ran at once: {spans}")
