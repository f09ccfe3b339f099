"""KIND_GPU instances on a Ray cluster whose worker node has two GPUs, logical ones (Ray hands
them out and sets each actor's CUDA_VISIBLE_DEVICES, with no device behind them): the group is
placed on that node, each host gets its own GPU, and the rate limiter gives each of those GPUs
its own pool. What a real GPU does with the model is not covered here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("ray")

from tests.integration.model_files import write
from tests.integration.ray_cluster import (
    SPAN_MODEL,
    LocalRayCluster,
    hosts_ran_at_once,
    placed_instances,
    ray_cluster,
)
from tests.integration.server import RunningServer, running_server

# A Ray cluster and a server with two host processes on a loaded 2-core machine: minutes.
pytestmark = pytest.mark.timeout(900)

# Each instance needs the one copy of R on its GPU: per GPU, both run at once.
ON_GPUS = """\
name: "on_gpus" backend: "python" max_batch_size: 8
input [ { name: "INPUT", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "SPAN", data_type: TYPE_FP64, dims: [ 3 ] } ]
instance_group [ { count: 2, kind: KIND_GPU,
  rate_limiter { resources [ { name: "R", count: 1 } ] } } ]
"""

# Triton's per-machine GPU ids, read on a cluster as a count: one instance per listed GPU.
LISTED = """\
name: "listed" backend: "python" max_batch_size: 8
input [ { name: "INPUT", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "SPAN", data_type: TYPE_FP64, dims: [ 3 ] } ]
instance_group [ { count: 1, kind: KIND_GPU, gpus: [ 0, 1 ] } ]
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    with ray_cluster(workers=0) as running:
        running.add_worker(num_gpus=4)
        running.cluster.wait_for_nodes()
        yield running


@pytest.fixture(scope="module")
def server(
    cluster: LocalRayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("gpu_repository")
    write(root, "on_gpus", SPAN_MODEL, ON_GPUS)
    write(root, "listed", SPAN_MODEL, LISTED)
    with running_server(
        root,
        "--cluster", cluster.address,
        "--cluster-placement-timeout", "60",
        "--rate-limit", "execution_count",
        timeout=180,
    ) as running:  # fmt: skip
        yield running


def test_a_gpu_group_lands_on_the_gpu_node_one_gpu_per_host(
    server: RunningServer, cluster: LocalRayCluster
) -> None:
    placed = placed_instances(server.log_text())
    nodes = {placed[name][0] for name in ("on_gpus_0_0", "on_gpus_0_1")}
    assert nodes != {cluster.head_id} and len(nodes) == 1
    # The hosts of one node are that node's GPUs 0 and 1, two pools: they run at once.
    hosts_ran_at_once(server.http_url, "on_gpus", 4)


def test_gpu_ids_are_read_as_a_count_with_a_warning(
    server: RunningServer, cluster: LocalRayCluster
) -> None:
    placed = placed_instances(server.log_text())
    assert sorted(name for name in placed if name.startswith("listed_")) == [
        "listed_0_0",
        "listed_0_1",
    ]
    assert "gpus [0, 1] is read as a count" in server.log_text()
