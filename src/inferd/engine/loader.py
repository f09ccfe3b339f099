"""Turn one model version folder into something that serves: config, instances, scheduler.

Blocking (backends read files and build sessions), so the engine runs it in a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inferd.backends.base import Backend, Device, LoadedModel
from inferd.backends.registry import BackendRegistry
from inferd.core.calls import ModelCalls
from inferd.core.config_audit import enforce_config_fields
from inferd.core.config_checks import validate_config
from inferd.core.errors import InvalidArgument, Unavailable, Unsupported
from inferd.core.model_config import ModelConfig, ModelInstanceGroup
from inferd.core.responses import ResponseChannel
from inferd.engine.api import LoadOptions
from inferd.engine.classification import with_labels
from inferd.engine.request_checks import ModelTensor
from inferd.engine.warmup import WarmupSample, warmup_samples
from inferd.instances.instance import Instance, ModelInstance
from inferd.instances.placement import InstancePlacer, Placement, group_devices
from inferd.scheduling.base import Scheduler
from inferd.scheduling.batch import BatchCallback
from inferd.scheduling.dynamic import DynamicBatcher
from inferd.scheduling.dynamic_settings import BatchingSettings
from inferd.scheduling.ensemble_graph import EnsembleGraph
from inferd.scheduling.iterative import IterativeBatcher
from inferd.scheduling.passive import PassiveOnly
from inferd.scheduling.rate_limiter import RateLimiter, Registration
from inferd.scheduling.sequence import SequenceBatcher
from inferd.scheduling.sequence_settings import SequenceSettings

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class LoadedVersion:
    """A model version ready to serve: everything the request path needs, resolved once."""

    model_name: str
    version: int
    config: ModelConfig
    inputs: dict[str, ModelTensor]
    outputs: dict[str, ModelTensor]
    scheduler: Scheduler
    placement: str  # where it runs, for the log: its backend and devices, or its steps
    instances: Sequence[Instance] = ()
    # What holds the instances (and the model they share), released at unload.
    holder: Placement | None = None
    # The steps it runs when it is an ensemble (which has no backend, model or instances):
    # the one place a loaded version says it is one.
    ensemble: EnsembleGraph | None = None
    # The few tensors with a config `reshape`, so a request walks only those.
    reshaped_inputs: tuple[ModelTensor, ...] = field(init=False)
    reshaped_outputs: tuple[ModelTensor, ...] = field(init=False)
    # Whether it answers a request with a stream of responses (`model_transaction_policy`).
    decoupled: bool = field(init=False)
    # The config's, read by every request: a field of the protobuf message costs a lookup by
    # name (0.1-0.2 us), a field here an attribute load.
    max_batch_size: int = field(init=False)
    # `version` as the statistics and responses name it, built once rather than per request.
    version_name: str = field(init=False)
    # Requests inside the engine right now (the in-flight gauge); counted on the event loop.
    in_flight: int = field(init=False, default=0)
    # `model_warmup`, run on every instance before the version serves, and how long it took.
    warmup: tuple[WarmupSample, ...] = ()
    warmup_seconds: float = field(init=False, default=0.0)
    # Whether its requests go through the server's response cache (set when it loads).
    cached: bool = field(init=False, default=False)
    # The channels of its decoupled requests whose streams are open (`Engine.stream`).
    streams: set[ResponseChannel] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.decoupled = self.config.model_transaction_policy.decoupled
        self.max_batch_size = self.config.max_batch_size
        self.version_name = str(self.version)
        self.reshaped_inputs = tuple(s for s in self.inputs.values() if s.reshape is not None)
        self.reshaped_outputs = tuple(s for s in self.outputs.values() if s.reshape is not None)

    def end_streams(self) -> None:
        """Fail every stream still open, on the event loop, once its scheduler stopped: the
        version is going, so a model that would send on from threads of its own (or never
        send its final response) leaves its client an error, not an endless stream; and its
        request is cancelled for the model, whose threads may stop (`ResponseChannel.end`)."""
        unloaded = Unavailable(
            f"model '{self.model_name}' version {self.version} was unloaded before this "
            "request's stream ended"
        )
        for channel in list(self.streams):
            channel.end(unloaded)

    def close(self) -> None:
        if self.holder is not None:
            self.holder.close()


def complete_config(
    config: ModelConfig, version_path: Path, backend: Backend, options: LoadOptions
) -> ModelConfig:
    """A completed, validated copy of `config` for one version folder; refused fields raise,
    fields without effect are logged."""
    completed = prepare_config(config, version_path, backend, options)
    enforce_config_fields(completed)
    return completed


def prepare_config(
    config: ModelConfig, version_path: Path, backend: Backend, options: LoadOptions
) -> ModelConfig:
    """`complete_config` without the field registry's verdict (`inferd check` reports it)."""
    completed = ModelConfig()
    completed.CopyFrom(config)
    _check_ragged(completed, backend)  # before the backend reads the model for it
    if options.auto_complete_config:
        had_batch_size = completed.max_batch_size > 0
        backend.complete_config(completed, version_path, options.default_max_batch_size)
        scheduled = completed.WhichOneof("scheduling_choice") is not None
        if completed.max_batch_size > 0 and not had_batch_size and not scheduled:
            completed.dynamic_batching.SetInParent()  # Triton enables batching it inferred
    _complete_instance_groups(completed, backend, options.placer)
    validate_config(completed)
    _check_decoupled(completed, backend)
    _check_iterative(completed, backend)
    _check_optional(completed, backend)
    return completed


def _check_decoupled(config: ModelConfig, backend: Backend) -> None:
    """Refuse a decoupled model on a backend that answers each request exactly once (checked
    here, so also when auto-complete is off and the backend never saw the config)."""
    if config.model_transaction_policy.decoupled and not getattr(
        backend, "supports_decoupled", False
    ):
        raise Unsupported(
            f"model '{config.name}' sets model_transaction_policy {{ decoupled: true }}, but "
            f"backend '{backend.name}' answers each request with exactly one response and "
            "cannot serve a decoupled model (the python backend can)"
        )


def _check_iterative(config: ModelConfig, backend: Backend) -> None:
    """Refuse an iterative sequence model on a backend whose models cannot hand a request back
    for another step."""
    if config.sequence_batching.iterative_sequence and not getattr(
        backend, "supports_iterative", False
    ):
        raise Unsupported(
            f"model '{config.name}' sets sequence_batching {{ iterative_sequence: true }}, but "
            f"backend '{backend.name}' runs each request once and cannot hand it back for "
            "another step (the python backend can)"
        )


def _check_optional(config: ModelConfig, backend: Backend) -> None:
    """Refuse `optional: true` on a backend whose models need every input: a request leaving
    the input out would fail inside the model instead of running as in Triton."""
    optional = [t.name for t in config.input if t.optional]
    if optional and not getattr(backend, "supports_optional_inputs", False):
        raise Unsupported(
            f"inputs {optional} are optional, but backend '{backend.name}' runs its models "
            "with every input (onnxruntime, pytorch and python can do without one)"
        )


def _check_ragged(config: ModelConfig, backend: Backend) -> None:
    """Refuse ragged batching on a backend whose models take no flattened batch."""
    used = [name for name in ("batch_input", "batch_output") if getattr(config, name)]
    used += [f"allow_ragged_batch ({t.name})" for t in config.input if t.allow_ragged_batch]
    if used and config.max_batch_size > 0 and not getattr(backend, "supports_ragged", False):
        raise Unsupported(
            f"model '{config.name}' uses {', '.join(used)}, but backend '{backend.name}' cannot "
            "take a ragged batch (flattened inputs and batch_input tensors; onnxruntime, "
            "pytorch and python can)"
        )


def _complete_instance_groups(
    config: ModelConfig, backend: Backend, placer: InstancePlacer
) -> None:
    if not config.instance_group:
        config.instance_group.add()
    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{index}"
        if group.count < 1:
            group.count = 1
        if group.kind == ModelInstanceGroup.KIND_AUTO:
            _resolve_auto(group, backend, placer)
        if group.kind == ModelInstanceGroup.KIND_GPU:
            _check_gpus(group, backend, placer)
        elif group.kind != ModelInstanceGroup.KIND_CPU:
            raise Unsupported(f"instance group '{group.name}' asks for an unsupported kind")


def _resolve_auto(group: ModelInstanceGroup, backend: Backend, placer: InstancePlacer) -> None:
    """KIND_AUTO: the listed GPUs (or GPU 0) when the backend can use a GPU, else the CPU."""
    if placer.offers_gpus(backend):
        group.kind = ModelInstanceGroup.KIND_GPU
        return
    group.kind = ModelInstanceGroup.KIND_CPU
    if group.gpus:
        logger.warning(
            "instance group '%s': no GPU usable by backend '%s', so KIND_AUTO runs on CPU "
            "and ignores gpus %s",
            group.name,
            backend.name,
            list(group.gpus),
        )
        del group.gpus[:]


def _check_gpus(group: ModelInstanceGroup, backend: Backend, placer: InstancePlacer) -> None:
    if placer.checks_gpus_here and not backend.gpu_available():
        raise Unavailable(
            f"instance group '{group.name}' asks for KIND_GPU, but backend '{backend.name}' "
            "finds no usable GPU on this machine (use KIND_CPU, or KIND_AUTO to fall back)"
        )
    if not group.gpus:
        group.gpus.append(0)
    if any(gpu < 0 for gpu in group.gpus):
        raise InvalidArgument(f"instance group '{group.name}' lists a negative GPU index")


class _LocalModel:
    """The version's model in this process, loaded when its first in-process instance is
    made (never, when every instance runs elsewhere)."""

    def __init__(
        self,
        backend: Backend,
        config: ModelConfig,
        version_path: Path,
        calls: ModelCalls | None,
    ) -> None:
        self._backend = backend
        self._config = config
        self._version_path = version_path
        self._calls = calls
        self._loaded: LoadedModel | None = None

    def instance(self, device: Device, name: str) -> Instance:
        if self._loaded is None:
            self._loaded = self._backend.load(self._config, self._version_path)
            # A model whose code may call other models (the python backend's BLS) is lent
            # the engine's calls before its first instance starts.
            lend = getattr(self._loaded, "lend_calls", None)
            if lend is not None and self._calls is not None:
                lend(self._calls)
        return ModelInstance(name, device, self._loaded.create_instance(device, name))

    def close(self) -> None:
        if self._loaded is not None:
            self._loaded.close()


class _Holder:
    """Releases a version's place in the rate limiter, its instances, then the model they
    share."""

    def __init__(self, placement: Placement, model: _LocalModel) -> None:
        self._placement = placement
        self._model = model
        self.registration: Registration | None = None

    @property
    def instances(self) -> Sequence[Instance]:
        return self._placement.instances

    def close(self) -> None:
        if self.registration is not None:
            self.registration.close()
        self._placement.close()
        self._model.close()


def _scheduled_instances(
    config: ModelConfig, holder: _Holder, limiter: RateLimiter | None
) -> list[Instance]:
    """The instances the scheduler gives work: all but the passive ones, each behind the rate
    limiter when it is on. Raises (and releases nothing) when the limiter refuses them."""
    groups = [group for group in config.instance_group for _ in group_devices(group)]
    active = [
        (instance, group)
        for instance, group in zip(holder.instances, groups, strict=True)
        if not group.passive
    ]
    if limiter is None:
        return [instance for instance, _ in active]
    holder.registration = limiter.register(active)
    return holder.registration.instances


def load_version(
    config: ModelConfig,
    version: int,
    version_path: Path,
    registry: BackendRegistry,
    options: LoadOptions,
    on_batch: BatchCallback | None = None,
    calls: ModelCalls | None = None,
) -> LoadedVersion:
    """Load one version; `on_batch` is told of every batch its scheduler runs; `calls` is
    lent to its model when it calls other models."""
    backend = registry.resolve(config, [version_path])
    config = complete_config(config, version_path, backend, options)
    batching = BatchingSettings.from_config(config)  # checked before anything is built
    sequence = (
        SequenceSettings.from_config(config, version_path.parent)
        if config.HasField("sequence_batching")
        else None
    )
    inputs = {t.name: ModelTensor.from_config(t) for t in config.input}
    outputs = {t.name: ModelTensor.from_config(t) for t in config.output}
    outputs = with_labels(config.name, outputs, config.output, version_path.parent)
    warmup = warmup_samples(config, version_path.parent)
    model = _LocalModel(backend, config, version_path, calls)
    try:
        placement = options.placer.place(
            config, version, version_path, backend.name, model.instance
        )
        holder = _Holder(placement, model)
    except BaseException:
        model.close()
        raise
    instances = list(holder.instances)
    try:
        scheduled = _scheduled_instances(config, holder, options.rate_limiter)
    except BaseException:
        holder.close()
        raise
    scheduler: Scheduler
    if not scheduled:
        scheduler = PassiveOnly()
    elif sequence is None:
        scheduler = DynamicBatcher(scheduled, batching, list(outputs), on_batch)
    elif sequence.iterative:
        scheduler = IterativeBatcher(scheduled, sequence, list(outputs), on_batch)
    else:
        scheduler = SequenceBatcher(scheduled, sequence, list(outputs), on_batch)
    devices = ", ".join(sorted({str(i.device) for i in instances}))
    return LoadedVersion(
        config.name,
        version,
        config,
        inputs,
        outputs,
        scheduler,
        f"{backend.name}, {len(instances)} instance(s) on {devices}",
        instances,
        holder,
        warmup=warmup,
    )
