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

    def add_worker(self, **resources: float) -> Any:
        return self.cluster.add_node(
            num_cpus=8,
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
