"""Placing a model version's instances on a Ray cluster.

Each instance group becomes one placement group of `count` bundles (one CPU each, or one GPU
for KIND_GPU), spread over the nodes as the model's `inferd.cluster.placement` parameter says.
A bundle that lands on the ingress's own node holds an in-process instance (no Ray hop);
every other bundle holds an `InstanceHost` actor. A group Ray cannot place within the
placement timeout leaves the model UNAVAILABLE, saying what it asked for.
"""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path
from typing import Any

from inferd.backends.base import Backend, Device, DeviceKind
from inferd.cluster.connect import ClusterSettings
from inferd.cluster.files import PackedVersion, pack_version
from inferd.cluster.host import HostSpec, HostStart, InstanceHost
from inferd.cluster.remote import Peers, RemoteInstance
from inferd.cluster.telemetry import BatchCounters, ClusterTelemetry
from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.model_config import (
    ModelConfig,
    ModelInstanceGroup,
    bool_parameter,
    string_parameter,
)
from inferd.instances.instance import Instance
from inferd.instances.placement import (
    InProcessPlacer,
    LocalInstanceFactory,
    LocalPlacement,
    Placement,
    group_devices,
    instance_name,
)
from inferd.scheduling.held_states import can_hold
from inferd.scheduling.sequence_settings import SequenceSettings

logger = logging.getLogger(__name__)

STRATEGIES = ("SPREAD", "PACK", "STRICT_SPREAD", "STRICT_PACK")
PLACEMENT_PARAMETER = "inferd.cluster.placement"
IN_PROCESS_PARAMETER = "inferd.cluster.in_process"
GROUP_PREFIX = "inferd"


class ClusterPlacement(LocalPlacement):
    """A version's instances and the placement groups that hold them."""

    def __init__(self, files: _Files) -> None:
        super().__init__([])
        self.groups: list[Any] = []
        # Holds the shipped archive while the version is loaded: a restarted host fetches it
        # again.
        self.files = files

    def add(self, instance: Instance) -> None:
        self._instances.append(instance)

    def close(self) -> None:
        from ray.util.placement_group import remove_placement_group

        super().close()
        for group in self.groups:
            # Removing waits for the cluster's answer, which never comes when the cluster
            # went first (a terminal's Ctrl-C reaches a local cluster's processes too);
            # leaving it to a daemon thread lets the server stop, and Ray drops this job's
            # groups when it leaves.
            threading.Thread(
                target=remove_placement_group, args=(group,), name="remove-group", daemon=True
            ).start()


class RayPlacer:
    checks_gpus_here = False  # a KIND_GPU group waits for a node with a GPU, or times out

    def __init__(self, settings: ClusterSettings, telemetry: ClusterTelemetry) -> None:
        import ray

        self._settings = settings
        self._telemetry = telemetry
        self._host_class: Any = ray.remote(InstanceHost)
        self._ingress_node = ray.get_runtime_context().get_node_id()
        # Ray refuses a second live group of one name, and a reloaded version's new group is
        # reserved while its old one still serves: each reservation gets a number of its own.
        self._reservations = itertools.count(1)

    def offers_gpus(self, backend: Backend) -> bool:
        import ray

        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return bool(resources.get("GPU", 0))

    def place(
        self,
        config: ModelConfig,
        version: int,
        version_path: Path,
        backend: str,
        local: LocalInstanceFactory,
    ) -> Placement:
        if not _runs_remotely(config):
            return InProcessPlacer().place(config, version, version_path, backend, local)
        strategy = _strategy(config)
        in_process = bool_parameter(config, IN_PROCESS_PARAMETER, True)
        peers = Peers(config.name, config.HasField("sequence_batching"))
        sequence = _held_states(config, version_path)
        files = _Files(config, version_path, backend, self._settings.repo_shared, sequence)
        placement = ClusterPlacement(files=files)
        try:
            for group in config.instance_group:
                _warn_gpu_ids(group)
                reserved = self._reserve(config, version, group, strategy)
                placement.groups.append(reserved)
                nodes = _bundle_nodes(reserved)
                hosts: list[tuple[RemoteInstance, Any]] = []
                for index, device in enumerate(group_devices(group)):
                    name = instance_name(group, index)
                    here = nodes[index] == self._ingress_node
                    # GPU instances always get a host: Ray then gives each its own GPU.
                    if in_process and here and device.kind is DeviceKind.CPU:
                        placement.add(local(device, name))
                        logger.info(
                            "model '%s': instance %s runs in this process", config.name, name
                        )
                        continue
                    counters = BatchCounters(config.name, str(version), name)
                    remote = self._start_host(group, reserved, index, files, peers, counters)
                    hosts.append(remote)
                    placement.add(remote[0])
                _wait_started(config.name, hosts, self._ingress_node)
        except BaseException:
            placement.close()
            raise
        peers.instances = list(placement.instances)
        return placement

    def _reserve(
        self, config: ModelConfig, version: int, group: ModelInstanceGroup, strategy: str
    ) -> Any:
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group

        bundles = [_bundle(device) for device in group_devices(group)]
        name = f"{GROUP_PREFIX}/{config.name}/{version}/{group.name}/{next(self._reservations)}"
        reserved = placement_group(bundles, strategy=strategy, name=name)
        timeout = self._settings.placement_timeout_s
        try:
            ray.get(reserved.ready(), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            remove_placement_group(reserved)
            raise Unavailable(
                f"instance group '{group.name}' could not be placed within {timeout:g} s: it "
                f"asks for {len(bundles)} x {bundles[0]} ({strategy}) and the cluster has "
                f"{_free_resources()} free (see `inferd cluster status`)"
            ) from None
        return reserved

    def _start_host(
        self,
        group: ModelInstanceGroup,
        reserved: Any,
        index: int,
        files: _Files,
        peers: Peers,
        counters: BatchCounters,
    ) -> tuple[RemoteInstance, Any]:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        gpu = group.kind == ModelInstanceGroup.KIND_GPU
        # Ray gives an actor that asks for a GPU that one only, as its device 0.
        device = Device(DeviceKind.GPU, 0) if gpu else Device(DeviceKind.CPU)
        spec = files.spec(counters.instance, device)
        host = self._host_class.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(reserved, index),
            num_cpus=1,
            num_gpus=1 if gpu else 0,
            max_restarts=-1,
            max_task_retries=0,
        ).remote(spec)
        instance = RemoteInstance(
            counters.instance,
            device,
            host,
            peers,
            counters,
            self._telemetry,
            holds_states=spec.sequence is not None,
        )
        return instance, host.started.remote()


class _Files:
    """How hosts get the version's files: a shared path, or one archive through the object
    store (packed and put once, whatever the number of hosts)."""

    def __init__(
        self,
        config: ModelConfig,
        version_path: Path,
        backend: str,
        shared: bool,
        sequence: SequenceSettings | None,
    ) -> None:
        self._config = config.SerializeToString()
        self._backend = backend
        self._version_path = version_path
        self._shared = shared
        self._sequence = sequence
        self._packed: tuple[PackedVersion, Any] | None = None

    def spec(self, instance: str, device: Device) -> HostSpec:
        if self._shared:
            folder = str(self._version_path)
            return HostSpec(
                self._config, self._backend, instance, device, folder, sequence=self._sequence
            )
        if self._packed is None:
            import ray

            packed = pack_version(self._version_path)
            self._packed = packed, ray.put(packed.archive)
        packed, archive = self._packed
        return HostSpec(
            self._config,
            self._backend,
            instance,
            device,
            packed.version_folder,
            packed.digest,
            [archive],
            self._sequence,
        )


def _warn_gpu_ids(group: ModelInstanceGroup) -> None:
    if group.kind == ModelInstanceGroup.KIND_GPU and list(group.gpus) != [0]:
        logger.warning(
            "instance group '%s': on a cluster, gpus %s is read as a count (%d instance(s) per "
            "listed GPU, each on a GPU Ray chooses), not as device ids of one machine",
            group.name,
            list(group.gpus),
            group.count,
        )


def _runs_remotely(config: ModelConfig) -> bool:
    """Decoupled and iterative models answer through per-request channels that live in this
    process, so their instances stay here."""
    if config.model_transaction_policy.decoupled or config.sequence_batching.iterative_sequence:
        logger.info(
            "model '%s' streams its responses: its instances run in the ingress process",
            config.name,
        )
        return False
    return True


def _held_states(config: ModelConfig, version_path: Path) -> SequenceSettings | None:
    """A sequence model's settings, when its hosts keep its sequences' implicit states (the
    initial states read here, from the model folder, travel with them)."""
    if not config.HasField("sequence_batching"):
        return None
    settings = SequenceSettings.from_config(config, version_path.parent)
    inputs = [tensor.name for tensor in config.input]
    return settings if can_hold(settings, inputs) else None


def _strategy(config: ModelConfig) -> str:
    strategy = (string_parameter(config, PLACEMENT_PARAMETER) or "SPREAD").strip().upper()
    if strategy not in STRATEGIES:
        raise InvalidArgument(
            f"model '{config.name}': parameter {PLACEMENT_PARAMETER} is '{strategy}', "
            f"expected one of {', '.join(STRATEGIES)}"
        )
    return strategy


def _bundle(device: Device) -> dict[str, float]:
    return {"CPU": 1.0, "GPU": 1.0} if device.kind is DeviceKind.GPU else {"CPU": 1.0}


def _bundle_nodes(reserved: Any) -> list[str]:
    from ray.util.placement_group import placement_group_table

    table: dict[int, str] = placement_group_table(reserved)["bundles_to_node_id"]
    return [table[index] for index in sorted(table)]


def _wait_started(model: str, hosts: list[tuple[RemoteInstance, Any]], ingress_node: str) -> None:
    import ray

    for instance, started in hosts:
        start: HostStart = ray.get(started)
        if start.failure:
            raise Unavailable(
                f"instance {instance.name} failed to load on its node: {start.failure}"
            )
        instance.device = _node_device(instance.device, start, ingress_node)
        instance.counters.node = start.node_id
        instance.incarnation = start.incarnation
        logger.info(
            "model '%s': instance %s runs on node %s (pid %d)",
            model,
            instance.name,
            start.node_id,
            start.pid,
        )


def _node_device(device: Device, start: HostStart, ingress_node: str) -> Device:
    """The device a host's instance runs on, as the rate limiter keys it: the node's own GPU
    number (the host sees it as GPU 0), on its node ("" for the ingress's, whose devices the
    in-process instances share). A GPU id that is not a number (a MIG UUID) counts as 0, so
    such devices of one node share a pool: stricter, never looser."""
    index = 0
    if device.kind is DeviceKind.GPU and start.gpu_ids and start.gpu_ids[0].isdigit():
        index = int(start.gpu_ids[0])
    node = "" if start.node_id == ingress_node else start.node_id
    return Device(device.kind, index, node)


def _free_resources() -> dict[str, float]:
    import ray

    free: dict[str, float] = ray.available_resources()  # type: ignore[no-untyped-call]
    return {key: free.get(key, 0.0) for key in ("CPU", "GPU")}
