"""Loading the versions of one model: each one built (`loader.py` for a backend's,
`ensembles.py` for an ensemble), warmed up, and its scheduler started, or recorded as
UNAVAILABLE with its reason; the observers told how long each load took, and of every batch
its scheduler runs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from inferd.backends.registry import BackendRegistry
from inferd.core.calls import ModelCalls
from inferd.core.errors import InferdError
from inferd.core.observer import Observer
from inferd.core.tracing import RequestTracing
from inferd.core.types import Timestamps
from inferd.engine.api import EngineSettings, ModelState, VersionStatus
from inferd.engine.ensembles import is_ensemble, load_ensemble
from inferd.engine.loader import LoadedVersion, load_version
from inferd.engine.model_table import ModelEntry, ModelTable, unavailable
from inferd.engine.warmup import warm_up
from inferd.repository.layout import ModelFolder
from inferd.repository.store import ModelRepository
from inferd.repository.versions import select_versions
from inferd.scheduling.batch import BatchCallback, Pending
from inferd.scheduling.ensemble import StepCall

# The lifecycle's logger: load lines keep the name operators and log filters know.
logger = logging.getLogger("inferd.engine.lifecycle")


class VersionLoader:
    """Loads model versions for the lifecycle (`lifecycle.py`), which decides when."""

    def __init__(
        self,
        settings: EngineSettings,
        repository: ModelRepository,
        registry: BackendRegistry,
        observers: tuple[Observer, ...],
        table: ModelTable,
        step: StepCall,
        calls: ModelCalls | None,
        tracing: RequestTracing | None,
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._registry = registry
        self._observers = observers
        self._table = table
        self._step = step
        self._calls = calls
        self._tracing = tracing

    async def load(
        self, folder: ModelFolder, repository: ModelRepository | None = None
    ) -> ModelEntry:
        """Every version `folder` asks for, each READY (warmed up, its scheduler started) or
        UNAVAILABLE with its reason; from `repository` rather than the server's when given."""
        entry = ModelEntry(folder=folder)
        wanted, missing = select_versions(folder.config.version_policy, folder.versions)
        for version in missing:
            # As Triton: the policy's other versions serve, and the server can still be ready.
            logger.error(
                "version %d is specified for model '%s', but the version directory is not present",
                version,
                folder.name,
            )
        if not wanted:
            reason = "no version folder to serve"
            if missing:
                reason += f" (version_policy names {', '.join(map(str, missing))})"
            entry.statuses.append(unavailable(folder.name, "", reason))
        for version in wanted:
            started = time.monotonic()
            try:
                loaded = await self._load_version(folder, version, repository)
                await warm_up_version(loaded)
            except InferdError as exc:
                logger.error(
                    "model '%s' version %d failed to load: %s", folder.name, version, exc.message
                )
                entry.statuses.append(unavailable(folder.name, str(version), exc.message))
                self._load_finished(folder.name, version, started, False)
                continue
            except Exception as exc:  # a backend bug must not take the server down
                logger.exception("model '%s' version %d failed to load", folder.name, version)
                entry.statuses.append(unavailable(folder.name, str(version), repr(exc)))
                self._load_finished(folder.name, version, started, False)
                continue
            self._load_finished(folder.name, version, started, True)
            loaded.cached = self._uses_cache(loaded)
            loaded.scheduler.start()
            entry.versions[version] = loaded
            entry.sources[version] = folder.versions[version]
            entry.statuses.append(VersionStatus(folder.name, str(version), ModelState.READY))
            warmed = f", warmup {loaded.warmup_seconds * 1000:.1f} ms" if loaded.warmup else ""
            logger.info(
                "model '%s' version %d ready (%s%s)", folder.name, version, loaded.placement, warmed
            )
        return entry

    def _uses_cache(self, loaded: LoadedVersion) -> bool:
        if not loaded.config.response_cache.enable:
            return False
        if self._settings.response_cache is None:
            logger.warning(
                "model '%s' enables response_cache, but the server has no cache "
                "(--cache-config local,size=BYTES): every request runs the model",
                loaded.model_name,
            )
            return False
        return True

    async def _load_version(
        self, folder: ModelFolder, version: int, repository: ModelRepository | None
    ) -> LoadedVersion:
        if is_ensemble(folder.config):
            local = Path(folder.location)
            model_dir = local if local.is_dir() else None  # for its label files
            return load_ensemble(
                folder.config, version, self._table.find_version, self._step, model_dir
            )
        repository = repository or self._repository
        path = await asyncio.to_thread(repository.fetch, folder, version)
        return await asyncio.to_thread(
            load_version,
            folder.config,
            version,
            path,
            self._registry,
            self._settings.load,
            self._batch_reporter(folder.name, str(version)),
            self._calls,
        )

    def _load_finished(self, name: str, version: int, started: float, loaded: bool) -> None:
        seconds = time.monotonic() - started
        for observer in self._observers:
            observer.version_load_finished(name, str(version), seconds, loaded)

    def _batch_reporter(self, name: str, version: str) -> BatchCallback | None:
        observers, tracing = self._observers, self._tracing
        if not observers and tracing is None:
            return None

        batch_executed = tuple(observer.batch_executed for observer in observers)

        def report(
            rows: int, compute: Timestamps, instance: str, calls: Sequence[Pending], padding: int
        ) -> None:
            for executed in batch_executed:
                executed(name, version, rows, compute, instance, padding)
            if tracing is not None and tracing.active:
                requests = [call.request for call in calls]
                tracing.batch_executed(name, version, rows, compute, instance, requests)

        return report


async def warm_up_version(loaded: LoadedVersion) -> None:
    """Run the version's `model_warmup` on its instances; a failure closes the version, which
    never served."""
    if not loaded.warmup:
        return
    try:
        loaded.warmup_seconds = await warm_up(
            loaded.model_name,
            loaded.instances,
            loaded.warmup,
            list(loaded.outputs),
            loaded.decoupled,
        )
    except BaseException:
        await asyncio.to_thread(loaded.close)
        raise
