"""Where a model version's instances run: the seam a cluster plugs into.

The loader hands an `InstancePlacer` a completed config and a way to make an in-process
instance; the placer answers with the version's instances, wherever they run, and with what
to release at unload. Without a cluster every instance runs in this process
(`InProcessPlacer`); the cluster's placer puts some on other machines, behind the same
`Instance` interface, so nothing above this seam knows where a batch runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from inferd.backends.base import Backend, Device, DeviceKind
from inferd.core.model_config import ModelConfig, ModelInstanceGroup
from inferd.instances.instance import Instance

# Makes an instance in this process (named, on a device); the model loads on first use.
LocalInstanceFactory = Callable[[Device, str], Instance]


class Placement(Protocol):
    """A version's instances, and what holds them (closed once, at unload)."""

    @property
    def instances(self) -> Sequence[Instance]: ...

    def close(self) -> None: ...


class InstancePlacer(Protocol):
    # False where GPUs are found at placement, not in this process (a cluster's nodes):
    # the loader then leaves a KIND_GPU group for the placer to satisfy or refuse.
    checks_gpus_here: bool

    def offers_gpus(self, backend: Backend) -> bool:
        """Whether KIND_AUTO groups of a model on `backend` should run on GPUs."""

    def place(
        self,
        config: ModelConfig,
        version: int,
        version_path: Path,
        backend: str,
        local: LocalInstanceFactory,
    ) -> Placement:
        """The instances of every group in `config` (complete and validated), a model of the
        backend named `backend`."""


def group_devices(group: ModelInstanceGroup) -> list[Device]:
    """One device per instance of a group: `count` on the CPU, or `count` on each listed GPU."""
    if group.kind == ModelInstanceGroup.KIND_CPU:
        return [Device(DeviceKind.CPU)] * group.count
    return [Device(DeviceKind.GPU, gpu) for gpu in group.gpus for _ in range(group.count)]


def instance_name(group: ModelInstanceGroup, index: int) -> str:
    return f"{group.name}_{index}"


class LocalPlacement:
    def __init__(self, instances: list[Instance]) -> None:
        self._instances = instances

    @property
    def instances(self) -> Sequence[Instance]:
        return self._instances

    def close(self) -> None:
        for instance in self._instances:
            instance.close()


class InProcessPlacer:
    """Every instance in this process, on this machine's devices."""

    checks_gpus_here = True

    def offers_gpus(self, backend: Backend) -> bool:
        return backend.gpu_available()

    def place(
        self,
        config: ModelConfig,
        version: int,
        version_path: Path,
        backend: str,
        local: LocalInstanceFactory,
    ) -> Placement:
        instances: list[Instance] = []
        try:
            for group in config.instance_group:
                for index, device in enumerate(group_devices(group)):
                    instances.append(local(device, instance_name(group, index)))
        except BaseException:
            LocalPlacement(instances).close()
            raise
        return LocalPlacement(instances)
