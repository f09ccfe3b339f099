"""The actor that runs one model instance on a cluster node, with the unchanged backend code.

It loads the version from the files the ingress shipped (or a shared path), makes one
instance of it, and runs the batches the ingress's scheduler forms, one at a time. Across
calls it holds what the backend instance holds and, for a sequence model, its sequences'
implicit states (`HostedStates`), by batch slot: a restarted host holds none, so it serves
stateless models exactly as before and refuses the continuing steps of lost sequences.
"""

from __future__ import annotations

import os
import resource
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferd.backends.base import BackendInstance, BatchRequest, Device, LoadedModel
from inferd.backends.registry import BackendRegistry
from inferd.cluster.files import cached_version, unpack_version
from inferd.cluster.wire import PackedAnswer, PackedBatch, pack_answer, unpack_batch
from inferd.core.errors import InferdError
from inferd.core.model_config import ModelConfig
from inferd.core.types import Array
from inferd.instances.instance import ExecutionResult, run_batch
from inferd.scheduling.held_states import HostedStates
from inferd.scheduling.sequence_settings import SequenceSettings


@dataclass(frozen=True, slots=True)
class HostSpec:
    """What a host needs to make its instance; sent once, at the actor's creation."""

    config: bytes  # the completed ModelConfig, serialised
    backend: str  # the backend the ingress resolved for it
    instance: str
    device: Device
    version_folder: str  # a path on a shared file system, or one inside the shipped archive
    digest: str = ""  # the shipped archive's name; empty when the path is shared
    # The archive's object, wrapped in a list so that Ray hands over the reference rather
    # than the bytes: a node that has the version cached never fetches it.
    archive: Sequence[Any] = ()
    # A sequence model's settings, when its host keeps the sequences' implicit states.
    sequence: SequenceSettings | None = None


@dataclass(frozen=True, slots=True)
class HostStart:
    """Where a host runs, which start of it this is, why its instance failed to load ("" when
    it did not), and the GPUs Ray gave it, as the node numbers them."""

    node_id: str
    pid: int
    incarnation: str
    failure: str
    gpu_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HostUsage:
    node_id: str
    node_ip: str
    pid: int
    rss_bytes: int
    device_memory_bytes: int
    sequence_states: int = 0  # sequences whose implicit states the host holds
    sequence_state_bytes: int = 0


class InstanceHost:
    """Made a Ray actor by the placer (`ray.remote(InstanceHost)`); never imported by Ray
    code below the cluster layer."""

    def __init__(self, spec: HostSpec) -> None:
        import ray

        self._name = spec.instance
        context = ray.get_runtime_context()
        self._node_id = context.get_node_id()
        self._gpu_ids = tuple(context.get_accelerator_ids().get("GPU", ()))
        self._node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        self._loaded: LoadedModel | None = None
        self._instance: BackendInstance | None = None
        # A load that fails is reported by `started`, not raised: a raising constructor
        # would make Ray restart the actor (max_restarts=-1) and fail again, forever.
        self._failure = ""
        # Names this start of the host: a restarted one (its process killed, its node lost)
        # answers with another, so the ingress knows what the host held is gone.
        self._incarnation = uuid.uuid4().hex
        self._states = None if spec.sequence is None else HostedStates(spec.sequence)
        try:
            config = ModelConfig.FromString(spec.config)
            backend = BackendRegistry().get(spec.backend)
            self._loaded = backend.load(config, _version_path(spec))
            self._instance = self._loaded.create_instance(spec.device, spec.instance)
        except InferdError as exc:
            self._failure = exc.message
        except Exception as exc:
            self._failure = f"{type(exc).__name__}: {exc}"

    def started(self) -> HostStart:
        return HostStart(
            self._node_id, os.getpid(), self._incarnation, self._failure, self._gpu_ids
        )

    def execute(self, batch: PackedBatch) -> PackedAnswer:
        """The batch's outputs, how long the backend took (ns; clocks differ by node), and
        this start's incarnation, packed."""
        inputs, output_names, requests = unpack_batch(batch)
        states = self._states
        rows = None if states is None else states.feed(inputs)
        if states is None or rows is None:
            result = self._run(inputs, output_names, requests)
            outputs = result.outputs
        else:
            result = self._run(inputs, [*output_names, *states.state_outputs], requests)
            outputs = states.keep(rows, result.outputs)
        elapsed = result.compute_end_ns - result.compute_start_ns
        return pack_answer(outputs, elapsed, self._incarnation)

    def _run(
        self, inputs: dict[str, Array], output_names: list[str], requests: list[BatchRequest]
    ) -> ExecutionResult:
        # Arrays that crossed are read-only; a backend may write into its inputs.
        owned = {
            name: array if array.flags.writeable else np.array(array)
            for name, array in inputs.items()
        }
        assert self._instance is not None  # the placer never sends work to a failed host
        return run_batch(self._instance, self._name, owned, output_names, requests)

    def forget(self, slots: list[int]) -> None:
        """Drop the implicit states of the sequences the ingress released from `slots`."""
        if self._states is not None:
            self._states.forget(slots)

    def usage(self) -> HostUsage:
        states = self._states
        return HostUsage(
            self._node_id,
            self._node_ip,
            os.getpid(),
            _rss(),
            _device_memory(),
            0 if states is None else len(states),
            0 if states is None else states.held_bytes(),
        )

    def close(self) -> None:
        if self._instance is not None:
            self._instance.close()
        if self._loaded is not None:
            self._loaded.close()


def _version_path(spec: HostSpec) -> Path:
    if not spec.digest:
        return Path(spec.version_folder)
    cached = cached_version(spec.digest, spec.version_folder)
    if cached is not None:
        return cached
    import ray

    archive: bytes = ray.get(spec.archive[0])
    return unpack_version(spec.digest, archive, spec.version_folder)


def _rss() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is what the platform offers
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _device_memory() -> int:
    """GPU memory this process's PyTorch holds, where PyTorch is in use (else 0)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return 0
    return int(torch.cuda.memory_allocated())
