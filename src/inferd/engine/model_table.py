"""The model table: every model asked for, the versions of it serving now, the status of each
version asked for, and the folder it was last asked to load from.

The lifecycle changes entries (one whole entry at a time); the request path and the queries
only read them. An entry stays after a failed load, so the model is indexed UNAVAILABLE with
its reason; a model unloaded on request is indexed as such rather than UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from inferd.core.errors import NotFound, Unavailable, unknown_model
from inferd.engine.api import ModelState, VersionStatus
from inferd.engine.ensembles import composing_names
from inferd.engine.loader import LoadedVersion
from inferd.repository.layout import ModelFolder


@dataclass(slots=True)
class ModelEntry:
    """Every version of one model that is serving, plus the status of each version asked for."""

    versions: dict[int, LoadedVersion] = field(default_factory=dict)
    statuses: list[VersionStatus] = field(default_factory=list)
    # Where it was last asked to load from (None when that read failed): an ensemble loads
    # again from it when a model it uses changes.
    folder: ModelFolder | None = None
    # The local folder each serving version was loaded from (its repository's to clean).
    sources: dict[int, Path] = field(default_factory=dict)

    def latest(self) -> LoadedVersion | None:
        return self.versions[max(self.versions)] if self.versions else None

    def version_names(self) -> list[str]:
        """The versions serving, in order, as the protocol names them."""
        return [str(v) for v in sorted(self.versions)]


def unavailable(name: str, version: str, reason: str) -> VersionStatus:
    return VersionStatus(name, version, ModelState.UNAVAILABLE, reason)


class ModelTable:
    """Model name -> `ModelEntry`, plus the names unloaded on request."""

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self._unloaded: set[str] = set()  # unloaded on request: indexed as such, not UNKNOWN

    def get(self, name: str) -> ModelEntry | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return list(self._entries)

    def version_names(self, name: str) -> list[str]:
        """The versions of `name` serving, in order (none when it is not in the table)."""
        entry = self._entries.get(name)
        return entry.version_names() if entry is not None else []

    def serving(self) -> list[str]:
        """The models with at least one version serving."""
        return [name for name, entry in self._entries.items() if entry.versions]

    def put(self, name: str, entry: ModelEntry | None, unloaded: bool = False) -> ModelEntry | None:
        """Set (or, with None, remove) a model's entry at once; return the one it replaces.
        `unloaded`: removed on request, so the index says so."""
        old = self._entries.pop(name, None)
        if entry is not None:
            self._entries[name] = entry
        if unloaded:
            self._unloaded.add(name)
        else:
            self._unloaded.discard(name)
        return old

    def find_version(self, name: str, version: str = "") -> LoadedVersion:
        """The loaded version a request names ("" = the highest ready one)."""
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(unknown_model(name))
        if not version:
            loaded = entry.latest()
            if loaded is None:
                reasons = "; ".join(s.reason for s in entry.statuses if s.reason) or "not ready"
                raise Unavailable(f"model '{name}' has no ready version: {reasons}")
            return loaded
        number = int(version) if version.isdigit() else -1
        loaded = entry.versions.get(number)
        if loaded is None:
            raise NotFound(unknown_model(name, version))
        return loaded

    def loaded_versions(self) -> Iterator[LoadedVersion]:
        for entry in self._entries.values():
            yield from entry.versions.values()

    def all_ready(self) -> bool:
        """Whether every version asked for of every model is READY."""
        return all(s.state is ModelState.READY for e in self._entries.values() for s in e.statuses)

    def index(self, repository_names: Iterable[str], ready_only: bool) -> list[VersionStatus]:
        """Every model in the repository or the table and every version asked for, by name."""
        rows: list[VersionStatus] = []
        for name in sorted(set(repository_names) | set(self._entries)):
            entry = self._entries.get(name)
            if entry is not None:
                statuses = entry.statuses
            elif name in self._unloaded:
                statuses = [unavailable(name, "", "unloaded")]
            else:
                statuses = [VersionStatus(name, "", ModelState.UNKNOWN)]
            rows.extend(s for s in statuses if not ready_only or s.state is ModelState.READY)
        return rows

    def ensembles_using(self, model: str) -> list[ModelFolder]:
        """The folders of the ensembles asked for, serving or not, whose steps name `model`."""
        return [
            entry.folder
            for name, entry in self._entries.items()
            if name != model
            and entry.folder is not None
            and model in composing_names(entry.folder.config)
        ]
