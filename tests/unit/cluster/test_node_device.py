"""How a host's instance is described to the rate limiter: its node's own GPU number, on its
node ("" for the ingress's node, whose devices the in-process instances share)."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from inferd.backends.base import Device, DeviceKind
from inferd.cluster.host import HostStart
from inferd.cluster.placer import _node_device

ZERO_GPU = Device(DeviceKind.GPU, 0)


def start(node: str, *gpu_ids: str) -> HostStart:
    return HostStart(node, 1, "incarnation", "", gpu_ids)


def test_a_gpu_host_elsewhere_is_that_nodes_gpu() -> None:
    assert _node_device(ZERO_GPU, start("b", "3"), "a") == Device(DeviceKind.GPU, 3, "b")


def test_a_host_on_the_ingress_node_shares_its_devices() -> None:
    assert _node_device(ZERO_GPU, start("a", "1"), "a") == Device(DeviceKind.GPU, 1)
    assert _node_device(Device(DeviceKind.CPU), start("a"), "a") == Device(DeviceKind.CPU)


def test_a_cpu_host_elsewhere_is_its_nodes_device_0() -> None:
    assert _node_device(Device(DeviceKind.CPU), start("b"), "a") == Device(DeviceKind.CPU, 0, "b")


def test_a_gpu_named_by_uuid_counts_as_0() -> None:
    assert _node_device(ZERO_GPU, start("b", "MIG-1f2e"), "a") == Device(DeviceKind.GPU, 0, "b")
