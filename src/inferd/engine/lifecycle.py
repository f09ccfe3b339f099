"""The model lifecycle: what the control mode loads at start, load (an atomic reload when the
model serves), unload, the poll-mode loop, and re-checking the ensembles that use a model
whenever it changes (Triton's model lifecycle, under its repository manager's control modes).

One load or unload runs at a time. Every change of a model replaces its whole entry in the
model table, tells the observers which versions now serve, closes what no longer serves, and
then re-checks the ensembles using it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inferd.backends.registry import BackendRegistry
from inferd.core.calls import ModelCalls
from inferd.core.errors import InferdError, InvalidArgument, NotFound, Unsupported
from inferd.core.model_config import config_from_dict
from inferd.core.observer import Observer
from inferd.core.tracing import RequestTracing
from inferd.engine.api import EngineSettings, ModelState, VersionStatus
from inferd.engine.control import ControlMode, RepositoryPoller
from inferd.engine.ensembles import composing_to_load, ensembles_last
from inferd.engine.model_files import UploadedModels, remove_model_files
from inferd.engine.model_table import ModelEntry, ModelTable, unavailable
from inferd.engine.version_loading import VersionLoader
from inferd.repository.layout import check_model_name
from inferd.repository.poller import Fingerprint
from inferd.repository.store import LocalRepository, ModelRepository
from inferd.scheduling.ensemble import StepCall

logger = logging.getLogger(__name__)


class ModelLifecycle:
    """Loads, reloads and unloads the models of `table` as the control mode allows.

    `step` runs one ensemble step through its composing model's request path.
    """

    def __init__(
        self,
        settings: EngineSettings,
        registry: BackendRegistry,
        observers: Sequence[Observer],
        table: ModelTable,
        step: StepCall,
        calls: ModelCalls | None = None,
        tracing: RequestTracing | None = None,
    ) -> None:
        self._settings = settings
        self._repository: ModelRepository = (
            LocalRepository(settings.repository)
            if isinstance(settings.repository, Path)
            else settings.repository
        )
        self._observers = tuple(observers)
        self._table = table
        self._versions = VersionLoader(
            settings, self._repository, registry, self._observers, table, step, calls, tracing
        )
        self._rechecking: set[str] = set()  # ensembles being re-checked (ends loops of them)
        # One load or unload at a time, so a reload never races another change of a model.
        self._control_lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        # The private folders of models loaded from files sent in their load request.
        self._uploads = UploadedModels(settings.model_files_max_bytes)
        # The config override of each model's last load: a load without one keeps it, until
        # the model is unloaded (Triton's behaviour, which its lifecycle QA checks).
        self._overrides: dict[str, dict[str, Any]] = {}
        self.stopping = False

    def repository_model_names(self) -> list[str]:
        """The models in the repository as of the last look (does not block for long)."""
        return self._repository.known_model_names()

    # ---- control modes ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load what the control mode asks for; in poll mode, then follow the repository.
        A repository that cannot be read (a missing folder or bucket, refused credentials)
        raises, as Triton refuses to start."""
        settings = self._settings
        await asyncio.to_thread(self._repository.model_names)
        if settings.control_mode is ControlMode.EXPLICIT and "*" not in settings.startup_models:
            for name in settings.startup_models:
                check_model_name(name)  # a path-like --load-model is a usage error
            for name in settings.startup_models:
                await self._load_composing(name, None)
                await self._load_quietly(name)
            return
        known: dict[str, Fingerprint] = {}
        if settings.control_mode is ControlMode.POLL:
            known = await asyncio.to_thread(self._repository.scan)
        await self._load_all()
        if settings.control_mode is ControlMode.POLL:
            poller = RepositoryPoller(
                self._repository.scan,
                settings.poll_interval_s,
                known,
                self._load_quietly,
                self._unload_if_loaded,
            )
            self._poller = asyncio.create_task(poller.run(), name="repository-poller")

    async def _load_all(self) -> None:
        """Load every model in the repository (Triton's `none` control mode)."""
        names = await asyncio.to_thread(self._repository.model_names)
        for name in await asyncio.to_thread(ensembles_last, self._repository, names):
            await self._load_quietly(name)

    async def _load_quietly(self, name: str) -> None:
        # A failure is logged and recorded as UNAVAILABLE with its reason; the others still load.
        with contextlib.suppress(InferdError):
            await self.load_model(name)

    async def _unload_if_loaded(self, name: str) -> None:
        if self._table.get(name) is not None:
            await self.unload_model(name)

    async def control_load(
        self,
        name: str,
        config_override: dict[str, Any] | None,
        files: dict[str, bytes] | None = None,
    ) -> None:
        """The repository API's load (explicit mode only); `config_override` replaces the
        model's config file (its JSON form); `files` (`file:<path>` -> content, which needs
        the override) replace its folder."""
        self._check_explicit("load")
        check_model_name(name)
        source = None
        if files:
            source = await self._uploads.write(name, config_override, files)
        elif config_override is None:
            config_override = self._overrides.get(name)
        try:
            await self._load_composing(name, config_override)
            await self.load_model(name, config_override, source)
        except BaseException:
            if source is not None:  # nothing serves from it: a failed reload keeps the old
                remove_model_files(source.root)
            raise
        self._uploads.serving(name, source)
        if config_override is None or files:  # a plain reload of sent files reads the repository
            self._overrides.pop(name, None)
        else:
            self._overrides[name] = config_override

    async def _load_composing(self, name: str, config_override: dict[str, Any] | None) -> None:
        """Explicit mode, as in Triton: loading an ensemble first loads the models it uses."""
        try:
            if config_override is None:
                config = (await asyncio.to_thread(self._repository.read_model, name)).config
            else:
                config = config_from_dict(config_override)
        except InferdError:
            return  # the load itself reports it
        config.name = name
        serving = self._table.serving()
        repository = self._repository
        for model in await asyncio.to_thread(composing_to_load, repository, config, serving):
            await self._load_quietly(model)

    async def control_unload(self, name: str) -> None:
        """The repository API's unload (explicit mode only); a model not loaded is a no-op."""
        self._check_explicit("unload")
        # No name check: a name that could not be loaded is simply not loaded (as in Triton).
        self._overrides.pop(name, None)
        if self._table.get(name) is not None:
            await self.unload_model(name)
            self._uploads.unloaded(name)
        elif name not in await asyncio.to_thread(self._repository.model_names):
            raise NotFound(f"model '{name}' is not in the repository")

    def _check_explicit(self, action: str) -> None:
        mode = self._settings.control_mode
        if mode is not ControlMode.EXPLICIT:
            # Triton's wording first: its clients and QA match on it.
            raise Unsupported(
                f"explicit model load / unload is not allowed in model control mode "
                f"'{mode.value}' (cannot {action}); start the server with "
                "--model-control-mode explicit"
            )

    # ---- load, reload, unload --------------------------------------------------------------

    async def load_model(
        self,
        name: str,
        config_override: dict[str, Any] | None = None,
        source: LocalRepository | None = None,
    ) -> None:
        """(Re)load a model's versions (from `source` rather than the repository when given);
        failures are recorded as UNAVAILABLE with their reason, and raised when no version of
        the model could be served.

        A reload swaps atomically: the old versions keep serving until the new ones are
        ready, then finish what they accepted. A failed reload keeps the old versions.
        """
        async with self._control_lock:
            current = self._table.get(name)
            serving = current if current is not None and current.versions else None
            if serving is None:
                loading = ModelEntry(statuses=[VersionStatus(name, "", ModelState.LOADING)])
                self._table.put(name, loading)
            try:
                repository = self._repository if source is None else source
                folder = await asyncio.to_thread(repository.read_model, name)
                if config_override is not None:
                    folder.config = config_from_dict(config_override, "config override")
                    folder.config.name = name
            except InferdError as exc:
                logger.error("model '%s' failed to load: %s", name, exc.message)
                if serving is None:
                    # A name not in the repository leaves no trace in the index.
                    failed = ModelEntry(statuses=[unavailable(name, "", exc.message)])
                    await self._replace(name, None if isinstance(exc, NotFound) else failed)
                else:
                    _keep_serving(name, serving, exc.message)
                raise
            entry = await self._versions.load(folder, repository)
            if entry.versions or serving is None or not folder.versions:
                await self._replace(name, entry)
            else:
                # The ensembles using it are re-checked from the folder asked for last.
                serving.folder = folder
                _keep_serving(name, serving, _reasons(entry))
                await self._retain(name, serving)
        if not entry.versions:
            raise InvalidArgument(f"load failed for model '{name}': {_unavailable(entry)}")

    async def unload_model(self, name: str) -> None:
        async with self._control_lock:
            if self._table.get(name) is None:
                raise NotFound(f"model '{name}' is not loaded")
            await self._replace(name, None, unloaded=True)

    async def _replace(self, name: str, entry: ModelEntry | None, unloaded: bool = False) -> None:
        """Swap a model's entry at once; the old versions finish what they accepted, fail the
        streams still open after that, then close."""
        old = self._table.put(name, entry, unloaded)
        versions = entry.version_names() if entry is not None else []
        for observer in self._observers:
            observer.model_versions_changed(name, versions)
        if old is not None:
            for loaded in old.versions.values():
                await loaded.scheduler.stop()
                loaded.end_streams()
                await asyncio.to_thread(loaded.close)
        await self._retain(name, entry)
        if not self.stopping:
            await self._recheck_ensembles_using(name)

    async def _retain(self, name: str, entry: ModelEntry | None) -> None:
        """Let the repository drop what it fetched for `name` that no longer serves."""
        serving = list(entry.sources.values()) if entry is not None else []
        await asyncio.to_thread(self._repository.retain, name, serving)

    async def _recheck_ensembles_using(self, name: str) -> None:
        """Load again each ensemble that uses `name`, so it serves only while every composing
        model does (unavailable with the reason otherwise) and follows their reloads."""
        for folder in self._table.ensembles_using(name):
            if folder.name in self._rechecking:
                continue
            self._rechecking.add(folder.name)
            try:
                await self._replace(folder.name, await self._versions.load(folder))
            finally:
                self._rechecking.discard(folder.name)

    async def stop(self) -> None:
        """Stop polling; finish every accepted request, then unload everything."""
        self.stopping = True
        if self._poller is not None:
            self._poller.cancel()
        async with self._control_lock:
            for name in self._table.names():
                await self._replace(name, None)
        self._uploads.clear()
        await asyncio.to_thread(self._repository.close)


def _reasons(entry: ModelEntry) -> str:
    return "; ".join(f"{s.version or '-'}: {s.reason}" for s in entry.statuses if s.reason)


def _unavailable(entry: ModelEntry) -> str:
    """Why no version loaded, in Triton's words for a failed load."""
    return "; ".join(
        f"version {s.version} is at UNAVAILABLE state: {s.reason}" if s.version else s.reason
        for s in entry.statuses
        if s.reason
    )


def _keep_serving(name: str, serving: ModelEntry, reason: str) -> None:
    """A reload failed: the loaded versions keep serving, and their state says why."""
    logger.error("model '%s' failed to reload; the loaded versions keep serving", name)
    serving.statuses = [
        dataclasses.replace(s, reason=f"serving the last load; reloading failed: {reason}")
        if s.state is ModelState.READY
        else s
        for s in serving.statuses
    ]
