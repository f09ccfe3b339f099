"""Joining a Ray cluster from `--cluster ADDR`, or starting a simulated one on this machine.

ADDR is `auto` (Ray's own discovery: RAY_ADDRESS, or a cluster started on this machine),
`HOST:PORT` (a head node's GCS), `ray://HOST:PORT` (Ray Client: every call goes through the
head, for development) or `local[:N]` (N Ray nodes on this machine, on the loopback address,
each with its own processes and object store: a cluster to try things on).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from inferd.core.errors import InvalidArgument, Unavailable

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 25.0
NAMESPACE = "inferd"
# A simulated node's object store: small, as its nodes share this machine's memory.
LOCAL_OBJECT_STORE_BYTES = 128 * 1024 * 1024
# Simulated nodes advertise this many CPUs each, whatever the machine has, so that every
# instance of a repository finds room (each instance asks for one CPU by default).
LOCAL_NODE_CPUS = 32


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    address: str
    repo_shared: bool = False  # every node reads the model repository at the same path
    placement_timeout_s: float = 120.0


def import_ray() -> Any:
    """Ray, or an error that names the extra to install."""
    # Ray rewrites 127.0.0.1 to the interface's address on some platforms unless told not to.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as exc:
        raise Unavailable(
            "--cluster needs Ray, which is not installed: pip install 'inferd[ray]'"
        ) from exc
    return ray


class Connection:
    """This process's membership of a cluster; `close` leaves it (and stops a local one)."""

    def __init__(self, address: str, local: Any = None) -> None:
        self.address = address
        self._local = local

    def close(self) -> None:
        import ray

        ray.shutdown()
        if self._local is not None:
            self._local.shutdown()


def connect(address: str, quiet: bool = False) -> Connection:
    """Join the cluster at `address` (`quiet`: without the hosts' output on this process's
    stderr, for a client that only reads the cluster's tables)."""
    ray = import_ray()
    nodes = _local_node_count(address)
    if nodes is not None:
        local = _start_local(nodes)
        _init(ray, local.address, quiet)
        logger.info("cluster: %d simulated node(s) here, GCS at %s", nodes, local.address)
        return Connection(local.address, local)
    if address != "auto" and not address.startswith("ray://"):
        _check_reachable(address)
    _init(ray, address, quiet)
    logger.info("cluster: joined %s (%d node(s))", address, len(ray.nodes()))
    return Connection(address)


def _local_node_count(address: str) -> int | None:
    if address != "local" and not address.startswith("local:"):
        return None
    count = address.partition(":")[2] or "1"
    if not count.isdigit() or not 1 <= int(count) <= 16:
        raise InvalidArgument(f"--cluster {address}: local:N takes N from 1 to 16")
    return int(count)


def _start_local(nodes: int) -> Any:
    from ray.cluster_utils import Cluster

    node: dict[str, Any] = {
        "num_cpus": LOCAL_NODE_CPUS,
        "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
        "node_ip_address": "127.0.0.1",
    }
    head = {
        **node,
        "include_dashboard": False,
        # Ray starts a worker per CPU ahead of need by default: dozens of idle processes
        # per simulated node on one machine.
        "_system_config": {"enable_worker_prestart": False},
    }
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(nodes - 1):
        cluster.add_node(**node)
    return cluster


def _check_reachable(address: str) -> None:
    """Fail fast, naming the address, when nothing listens there (Ray itself would retry)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgument(
            f"--cluster {address}: expected auto, HOST:PORT, ray://HOST:PORT or local[:N]"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise Unavailable(f"--cluster {address}: no Ray head node answers there ({exc})") from exc


def _init(ray: Any, address: str, quiet: bool) -> None:
    """ray.init, bounded: a wrong address can otherwise keep it retrying for minutes."""
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ray-init")
    future = pool.submit(ray.init, address=address, namespace=NAMESPACE, log_to_driver=not quiet)
    try:
        future.result(timeout=CONNECT_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        raise Unavailable(
            f"--cluster {address}: no Ray cluster answered within {CONNECT_TIMEOUT_S:g} s"
        ) from None
    except Exception as exc:
        raise Unavailable(
            f"--cluster {address}: could not join the Ray cluster: {exc} (a cluster started "
            "with RAY_AUTH_MODE=token also needs its token here, in RAY_AUTH_TOKEN)"
        ) from exc
    finally:
        pool.shutdown(wait=False)
