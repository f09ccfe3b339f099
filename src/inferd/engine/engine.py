"""The Engine: which models are loaded, their states, and `infer()`. Frontends talk only to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferd.backends.base import DeviceKind
from inferd.backends.registry import BackendRegistry
from inferd.core.errors import (
    InferdError,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unsupported,
    unknown_model,
)
from inferd.core.model_config import config_from_dict
from inferd.core.observer import Observer
from inferd.core.types import InferRequest, InferResponse, Timestamps
from inferd.engine.control import ControlMode, RepositoryPoller, scan_repository
from inferd.engine.ensembles import (
    EnsembleIndex,
    composing_to_load,
    ensembles_last,
    is_ensemble,
    load_ensemble,
)
from inferd.engine.lifecycle import ModelState, VersionStatus
from inferd.engine.loader import LoadedVersion, LoadOptions, load_version
from inferd.engine.validation import TensorSpec, apply_reshape, check_request
from inferd.instances.instance import ModelInstance
from inferd.repository.layout import (
    ModelFolder,
    check_model_name,
    list_model_names,
    read_model_folder,
)
from inferd.repository.poller import Fingerprint
from inferd.repository.versions import select_versions
from inferd.scheduling.dynamic import BatchCallback

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    repository: Path
    load: LoadOptions = field(default_factory=LoadOptions)
    # Triton's --strict-readiness: the server is ready only when every model asked for is.
    strict_readiness: bool = True
    control_mode: ControlMode = ControlMode.NONE
    startup_models: tuple[str, ...] = ()  # explicit mode: loaded at start ("*" = all)
    poll_interval_s: float = 15.0


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True, slots=True)
class InstanceMetadata:
    name: str
    kind: str  # KIND_CPU | KIND_GPU, as the config names it
    device: str  # "cpu", "gpu:0"


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    instances: list[InstanceMetadata] = field(default_factory=list)


@dataclass(slots=True)
class _Model:
    """Every version of one model that is serving, plus the status of each version asked for."""

    versions: dict[int, LoadedVersion] = field(default_factory=dict)
    statuses: list[VersionStatus] = field(default_factory=list)

    def latest(self) -> LoadedVersion | None:
        return self.versions[max(self.versions)] if self.versions else None


class Engine:
    def __init__(
        self,
        settings: EngineSettings,
        registry: BackendRegistry,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.settings = settings
        self._registry = registry
        self._observers = tuple(observers)
        self._models: dict[str, _Model] = {}
        self._unloaded: set[str] = set()  # unloaded on request: indexed as such, not UNKNOWN
        self._ensembles = EnsembleIndex()
        self._rechecking: set[str] = set()  # ensembles being re-checked (ends loops of them)
        # One load or unload at a time, so a reload never races another change of a model.
        self._control_lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False

    # ---- lifecycle -------------------------------------------------------------------------

    def repository_model_names(self) -> list[str]:
        return list_model_names(self.settings.repository)

    async def start(self) -> None:
        """Load what the control mode asks for; in poll mode, then follow the repository."""
        settings = self.settings
        if settings.control_mode is ControlMode.EXPLICIT and "*" not in settings.startup_models:
            for name in settings.startup_models:
                check_model_name(name)  # a path-like --load-model is a usage error
            for name in settings.startup_models:
                await self._load_composing(name, None)
                await self._load_quietly(name)
            return
        known: dict[str, Fingerprint] = {}
        if settings.control_mode is ControlMode.POLL:
            known = await asyncio.to_thread(scan_repository, settings.repository)
        await self.load_all()
        if settings.control_mode is ControlMode.POLL:
            poller = RepositoryPoller(
                settings.repository,
                settings.poll_interval_s,
                known,
                self._load_quietly,
                self._unload_if_loaded,
            )
            self._poller = asyncio.create_task(poller.run(), name="repository-poller")

    async def load_all(self) -> None:
        """Load every model in the repository (Triton's `none` control mode)."""
        names = await asyncio.to_thread(self.repository_model_names)
        for name in await asyncio.to_thread(ensembles_last, self.settings.repository, names):
            await self._load_quietly(name)

    async def _load_quietly(self, name: str) -> None:
        # A failure is logged and recorded as UNAVAILABLE with its reason; the others still load.
        with contextlib.suppress(InferdError):
            await self.load_model(name)

    async def _unload_if_loaded(self, name: str) -> None:
        if name in self._models:
            await self.unload_model(name)

    async def control_load(self, name: str, config_override: dict[str, Any] | None) -> None:
        """The repository API's load (explicit mode only); `config_override` replaces the
        model's config file (its JSON form)."""
        self._check_explicit("load")
        check_model_name(name)
        await self._load_composing(name, config_override)
        await self.load_model(name, config_override)

    async def _load_composing(self, name: str, config_override: dict[str, Any] | None) -> None:
        """Explicit mode, as in Triton: loading an ensemble first loads the models it uses."""
        try:
            folder = await asyncio.to_thread(read_model_folder, self.settings.repository, name)
            config = folder.config if config_override is None else config_from_dict(config_override)
        except InferdError:
            return  # the load itself reports it
        config.name = name
        serving = [n for n, m in self._models.items() if m.versions]
        repository = self.settings.repository
        for model in await asyncio.to_thread(composing_to_load, repository, config, serving):
            await self._load_quietly(model)

    async def control_unload(self, name: str) -> None:
        """The repository API's unload (explicit mode only); a model not loaded is a no-op."""
        self._check_explicit("unload")
        check_model_name(name)
        if name in self._models:
            await self.unload_model(name)
        elif name not in await asyncio.to_thread(self.repository_model_names):
            raise NotFound(f"model '{name}' is not in the repository")

    def _check_explicit(self, action: str) -> None:
        mode = self.settings.control_mode
        if mode is not ControlMode.EXPLICIT:
            raise Unsupported(
                f"cannot {action} models in model control mode '{mode.value}'; "
                "start the server with --model-control-mode explicit"
            )

    async def load_model(self, name: str, config_override: dict[str, Any] | None = None) -> None:
        """(Re)load a model's versions; failures are recorded as UNAVAILABLE with their reason,
        and raised when no version of the model could be served.

        A reload swaps atomically: the old versions keep serving until the new ones are
        ready, then finish what they accepted. A failed reload keeps the old versions.
        """
        async with self._control_lock:
            self._unloaded.discard(name)
            current = self._models.get(name)
            serving = current is not None and bool(current.versions)
            if not serving:
                self._models[name] = _Model(statuses=[VersionStatus(name, "", ModelState.LOADING)])
            try:
                folder = await asyncio.to_thread(read_model_folder, self.settings.repository, name)
                if config_override is not None:
                    folder.config = config_from_dict(config_override, "config override")
                    folder.config.name = name
            except InferdError as exc:
                logger.error("model '%s' failed to load: %s", name, exc.message)
                if not serving:
                    # A name not in the repository leaves no trace in the index.
                    failed = _Model(statuses=[_unavailable(name, "", exc.message)])
                    await self._replace(name, None if isinstance(exc, NotFound) else failed)
                raise
            model = await self._load_versions(folder)
            if model.versions or not serving or not folder.versions:
                await self._replace(name, model)
            else:
                logger.error("model '%s' failed to reload; the loaded versions keep serving", name)
        if not model.versions:
            reasons = "; ".join(f"{s.version or '-'}: {s.reason}" for s in model.statuses)
            raise InvalidArgument(f"no version could be served: {reasons}")

    async def _load_versions(self, folder: ModelFolder) -> _Model:
        model = _Model()
        ensemble = is_ensemble(folder.config)
        if ensemble:
            self._ensembles.remember(folder)
        else:
            self._ensembles.forget(folder.name)
        wanted, missing = select_versions(folder.config.version_policy, folder.versions)
        for version in missing:
            model.statuses.append(
                _unavailable(folder.name, str(version), "version folder not found")
            )
        if not wanted and not missing:
            model.statuses.append(_unavailable(folder.name, "", "no version folder to serve"))
        for version in wanted:
            try:
                if ensemble:
                    loaded = load_ensemble(folder.config, version, self.find_version, self._step)
                else:
                    loaded = await asyncio.to_thread(
                        load_version,
                        folder.config,
                        version,
                        folder.versions[version],
                        self._registry,
                        self.settings.load,
                        self._batch_reporter(folder.name, str(version)),
                    )
            except InferdError as exc:
                logger.error(
                    "model '%s' version %d failed to load: %s", folder.name, version, exc.message
                )
                model.statuses.append(_unavailable(folder.name, str(version), exc.message))
                continue
            except Exception as exc:  # a backend bug must not take the server down
                logger.exception("model '%s' version %d failed to load", folder.name, version)
                model.statuses.append(_unavailable(folder.name, str(version), repr(exc)))
                continue
            loaded.scheduler.start()
            model.versions[version] = loaded
            model.statuses.append(VersionStatus(folder.name, str(version), ModelState.READY))
            logger.info(
                "model '%s' version %d ready (%s)", folder.name, version, _placement(loaded)
            )
        return model

    async def unload_model(self, name: str) -> None:
        async with self._control_lock:
            if name not in self._models:
                raise NotFound(f"model '{name}' is not loaded")
            self._unloaded.add(name)
            await self._replace(name, None)

    async def _replace(self, name: str, model: _Model | None) -> None:
        """Swap a model's entry at once; the old versions finish what they accepted, then close."""
        old = self._models.pop(name, None)
        if model is not None:
            self._models[name] = model
        versions = [str(v) for v in sorted(model.versions)] if model else []
        for observer in self._observers:
            observer.model_versions_changed(name, versions)
        if model is None:
            self._ensembles.forget(name)
        if old is not None:
            for loaded in old.versions.values():
                await self._close_version(loaded)
        if not self._stopping:
            await self._recheck_ensembles_using(name)

    async def _recheck_ensembles_using(self, name: str) -> None:
        """Load again each ensemble that uses `name`, so it serves only while every composing
        model does (unavailable with the reason otherwise) and follows their reloads."""
        for ensemble in self._ensembles.dependents(name):
            if ensemble in self._rechecking:
                continue
            self._rechecking.add(ensemble)
            try:
                model = await self._load_versions(self._ensembles.folder(ensemble))
                await self._replace(ensemble, model)
            finally:
                self._rechecking.discard(ensemble)

    async def _close_version(self, loaded: LoadedVersion) -> None:
        await loaded.scheduler.stop()
        await asyncio.to_thread(loaded.close)

    async def stop(self) -> None:
        """Finish every accepted request, then unload everything."""
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
        async with self._control_lock:
            for name in list(self._models):
                await self._replace(name, None)

    def _batch_reporter(self, name: str, version: str) -> BatchCallback | None:
        if not self._observers:
            return None
        observers = self._observers

        def report(rows: int, compute: Timestamps) -> None:
            for observer in observers:
                observer.batch_executed(name, version, rows, compute)

        return report

    # ---- queries ---------------------------------------------------------------------------

    def is_live(self) -> bool:
        return not self._stopping

    def is_ready(self) -> bool:
        if self._stopping:
            return False
        if not self.settings.strict_readiness:
            return True
        return all(s.state is ModelState.READY for m in self._models.values() for s in m.statuses)

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.find_version(name, version)
        except InferdError:
            return False
        return True

    def find_version(self, name: str, version: str = "") -> LoadedVersion:
        """The loaded version a request names ("" = the highest ready one)."""
        model = self._models.get(name)
        if model is None:
            raise NotFound(unknown_model(name))
        if not version:
            loaded = model.latest()
            if loaded is None:
                reasons = "; ".join(s.reason for s in model.statuses if s.reason) or "not ready"
                raise Unavailable(f"model '{name}' has no ready version: {reasons}")
            return loaded
        number = int(version) if version.isdigit() else -1
        loaded = model.versions.get(number)
        if loaded is None:
            raise NotFound(unknown_model(name, version))
        return loaded

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        loaded = self.find_version(name, version)
        batch = loaded.config.max_batch_size
        model = self._models[name]
        return ModelMetadata(
            name=name,
            versions=[str(v) for v in sorted(model.versions)],
            platform=loaded.config.platform or loaded.config.backend,
            inputs=[_tensor_metadata(s, batch) for s in loaded.inputs.values()],
            outputs=[_tensor_metadata(s, batch) for s in loaded.outputs.values()],
            instances=[_instance_metadata(i) for i in loaded.instances],
        )

    def model_config(self, name: str, version: str = "") -> Any:
        return self.find_version(name, version).config

    def repository_index(self, ready_only: bool = False) -> list[VersionStatus]:
        """Every model in the repository folder and every version asked for, with its state."""
        rows: list[VersionStatus] = []
        try:
            names = set(self.repository_model_names())
        except InferdError:
            names = set()
        for name in sorted(names | set(self._models)):
            model = self._models.get(name)
            if model is not None:
                statuses = model.statuses
            elif name in self._unloaded:
                statuses = [_unavailable(name, "", "unloaded")]
            else:
                statuses = [VersionStatus(name, "", ModelState.UNKNOWN)]
            rows.extend(s for s in statuses if not ready_only or s.state is ModelState.READY)
        return rows

    def instance_devices(self) -> list[tuple[str, str, str, str]]:
        """(model, version, instance, device) for every instance of every serving version."""
        return [
            (name, str(number), instance.name, str(instance.device))
            for name, model in self._models.items()
            for number, loaded in model.versions.items()
            for instance in loaded.instances
        ]

    def pending_requests(self) -> list[tuple[str, str, int]]:
        """(model, version, requests queued and not yet executing) for every serving version."""
        return [
            (name, str(number), loaded.scheduler.pending())
            for name, model in self._models.items()
            for number, loaded in model.versions.items()
        ]

    # ---- inference -------------------------------------------------------------------------

    async def _step(self, request: InferRequest) -> dict[str, Any]:
        """One ensemble step, through its composing model's own path (validation, scheduler,
        statistics)."""
        model = self._models.get(request.model_name)
        if model is None or not model.versions:
            raise Unavailable(f"composing model '{request.model_name}' is not loaded")
        return (await self.infer(request)).outputs

    async def infer(self, request: InferRequest) -> InferResponse:
        timestamps = request.timestamps
        if not timestamps.received:
            timestamps.received = time.monotonic_ns()
        loaded = self.find_version(request.model_name, request.model_version)
        version = str(loaded.version)
        success = False
        # An ensemble has no execution of its own to count its rows; read them before its
        # steps may release the inputs.
        ensemble_rows = 0
        if loaded.backend is None:
            ensemble_rows = request.batch_size() if loaded.config.max_batch_size > 0 else 1
        try:
            outputs = await self._run(loaded, request)
            success = True
        finally:
            timestamps.sent = time.monotonic_ns()
            rows = ensemble_rows if success else 0
            for observer in self._observers:
                observer.request_finished(request.model_name, version, timestamps, success, rows)
        return InferResponse(request.model_name, version, outputs, request.id)

    async def _run(self, loaded: LoadedVersion, request: InferRequest) -> dict[str, Any]:
        batched = loaded.config.max_batch_size > 0
        check_request(request, loaded.inputs, loaded.outputs, loaded.config.max_batch_size)
        for name, array in request.inputs.items():
            spec = loaded.inputs[name]
            if spec.reshape is not None:
                request.inputs[name] = apply_reshape(array, spec, spec.reshape, batched)
        outputs = await loaded.scheduler.submit(request)
        for name, array in outputs.items():
            spec = loaded.outputs[name]
            if spec.reshape is not None:
                outputs[name] = apply_reshape(array, spec, spec.dims, batched)
        return outputs


def _tensor_metadata(spec: TensorSpec, max_batch_size: int) -> TensorMetadata:
    return TensorMetadata(spec.name, spec.datatype, spec.wire_shape(max_batch_size))


def _placement(loaded: LoadedVersion) -> str:
    """Where a version runs, for the log: its backend and instances, or its steps."""
    if loaded.backend is None:
        steps = loaded.config.ensemble_scheduling.step
        return f"ensemble of {len(steps)} step(s)"
    devices = ", ".join(sorted({str(i.device) for i in loaded.instances}))
    return f"{loaded.backend.name}, {len(loaded.instances)} instance(s) on {devices}"


def _instance_metadata(instance: ModelInstance) -> InstanceMetadata:
    kind = "KIND_GPU" if instance.device.kind is DeviceKind.GPU else "KIND_CPU"
    return InstanceMetadata(instance.name, kind, str(instance.device))


def _unavailable(name: str, version: str, reason: str) -> VersionStatus:
    return VersionStatus(name, version, ModelState.UNAVAILABLE, reason)
