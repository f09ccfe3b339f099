"""A model repository in object storage (S3, GCS, Azure Blob), read through an fsspec
filesystem: listed to find models, versions and changes; each version served is downloaded
into a `DownloadCache` folder and loaded from there.

The layout is a local repository's, with object keys for paths: `<root>/<model>/config.pbtxt`,
`<root>/<model>/<version>/<files>`. A version's folder in the cache holds its files and the
model folder's other files (labels, a shared `model.py`), as `<digest>/<model>/<version>/`, so
a backend looking at the version folder's parent finds the model folder it expects.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferd.core.errors import InferdError, Unavailable
from inferd.core.model_config import ModelConfig
from inferd.repository.config_file import CONFIG_FILE_NAMES, parse_config_text
from inferd.repository.download_cache import DownloadCache
from inferd.repository.layout import (
    ModelFolder,
    check_config_name,
    check_model_name,
    is_version,
    not_in_repository,
)
from inferd.repository.poller import Fingerprint

# What tells one object's contents from another's, by filesystem (S3, GCS, Azure, others).
_TAG_FIELDS = (
    "ETag", "etag", "md5Hash", "generation", "LastModified", "last_modified", "mtime", "created",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RemoteFile:
    path: str  # as the filesystem names it
    relative: str  # under its model folder, '/'-separated
    tag: str
    size: int

    @property
    def version(self) -> int | None:
        """The version folder it is in, if any."""
        first, sep, _ = self.relative.partition("/")
        return int(first) if sep and is_version(first) else None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What fetching one version downloads: its files and the model folder's shared ones."""

    digest: str
    files: tuple[RemoteFile, ...]


class RemoteRepository:
    """A repository under `root` (a path of `filesystem`, without its protocol), known to
    users as `location` (its URL)."""

    def __init__(self, filesystem: Any, root: str, location: str, cache: DownloadCache) -> None:
        self._fs = filesystem
        self._root = root.rstrip("/")
        self._location = location
        self._cache = cache
        # The engine calls in from several threads (a load, a poll, an ensemble's look).
        self._lock = threading.Lock()
        self._names: list[str] = []
        self._plans: dict[str, dict[Path, _Plan]] = {}  # model -> version folder -> plan
        self._fetched: dict[str, set[str]] = {}  # model -> digests in the cache

    @property
    def location(self) -> str:
        return self._location

    def model_names(self) -> list[str]:
        return list(self.scan())

    def known_model_names(self) -> list[str]:
        return list(self._names)

    def scan(self) -> dict[str, Fingerprint]:
        models = self._list(self._root)
        with self._lock:
            self._names = sorted(models)
        return {
            name: frozenset((f.relative, f.tag, f.size) for f in files)
            for name, files in sorted(models.items())
        }

    def read_model(self, name: str) -> ModelFolder:
        check_model_name(name)
        files = self._list(f"{self._root}/{name}").get(name)
        with self._lock:
            self._names = sorted({*self._names, name} if files else set(self._names) - {name})
        if not files:
            raise not_in_repository(name)
        config = self._read_config(files)
        check_config_name(config, name)
        shared = [f for f in files if f.version is None and f.relative not in CONFIG_FILE_NAMES]
        plans: dict[Path, _Plan] = {}
        for version in sorted({f.version for f in files if f.version is not None}):
            own = [f for f in files if f.version == version]
            plan = _Plan(_digest(name, own + shared), tuple(own + shared))
            plans[self._cache.folder(plan.digest) / name / str(version)] = plan
        with self._lock:
            self._plans.setdefault(name, {}).update(plans)
        versions = {int(path.name): path for path in plans}
        return ModelFolder(name, f"{self._location}/{name}", config, versions)

    def fetch(self, folder: ModelFolder, version: int) -> Path:
        path = folder.versions[version]
        with self._lock:
            plan = self._plans.get(folder.name, {}).get(path)
        if plan is None:
            raise Unavailable(f"version {version} of model '{folder.name}' was not listed")
        try:
            self._cache.fill(plan.digest, lambda into: self._download(folder.name, plan, into))
        except InferdError:
            raise
        except Exception as exc:
            raise Unavailable(
                f"downloading version {version} of model '{folder.name}' from "
                f"{self._location} failed: {describe(exc)}"
            ) from exc
        with self._lock:
            self._fetched.setdefault(folder.name, set()).add(plan.digest)
        return path

    def retain(self, name: str, serving: Collection[Path]) -> None:
        with self._lock:
            fetched = self._fetched.pop(name, set())
            kept = {d for d in fetched if any(_under(p, d) for p in serving)}
            if kept:
                self._fetched[name] = kept
            plans = {p: plan for p, plan in self._plans.pop(name, {}).items() if p in serving}
            if plans:
                self._plans[name] = plans
        for digest in fetched - kept:
            self._cache.remove(digest)

    def close(self) -> None:
        self._cache.close()

    # ---- the filesystem --------------------------------------------------------------------

    def _list(self, prefix: str) -> dict[str, list[RemoteFile]]:
        """Every file under `prefix`, by model; hidden files and folders are left out."""
        try:
            listing: dict[str, dict[str, Any]] = self._fs.find(prefix, detail=True)
        except Exception as exc:
            raise Unavailable(
                f"model repository '{self._location}' cannot be listed: {describe(exc)}"
            ) from exc
        models: dict[str, list[RemoteFile]] = {}
        start = len(self._root) + 1
        for path, info in listing.items():
            parts = path[start:].split("/")
            if info.get("type") == "directory" or len(parts) < 2 or not all(parts):
                continue  # a folder marker, or a file beside the models
            if any(part.startswith(".") for part in parts):
                continue
            size = int(info.get("size") or 0)
            remote = RemoteFile(path, "/".join(parts[1:]), _tag(info), size)
            models.setdefault(parts[0], []).append(remote)
        return models

    def _read_config(self, files: list[RemoteFile]) -> ModelConfig:
        by_name = {f.relative: f for f in files}
        for file_name in CONFIG_FILE_NAMES:
            found = by_name.get(file_name)
            if found is None:
                continue
            try:
                text = self._fs.cat_file(found.path).decode()
            except Exception as exc:
                raise Unavailable(f"cannot read {file_name}: {describe(exc)}") from exc
            return parse_config_text(text, file_name)
        return ModelConfig()

    def _download(self, name: str, plan: _Plan, into: Path) -> None:
        targets = [into / name / f.relative for f in plan.files]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
        self._fs.get([f.path for f in plan.files], [str(t) for t in targets])
        for remote, target in zip(plan.files, targets, strict=True):
            if target.stat().st_size != remote.size:
                raise Unavailable(f"'{remote.relative}' changed while it was downloaded")


def _tag(info: dict[str, Any]) -> str:
    return next((str(info[key]) for key in _TAG_FIELDS if info.get(key) is not None), "")


def _digest(name: str, files: list[RemoteFile]) -> str:
    listing = sorted((f.relative, f.tag, f.size) for f in files)
    return hashlib.sha256(json.dumps([name, listing]).encode()).hexdigest()


def _under(path: Path, digest: str) -> bool:
    return digest in path.parts


def describe(exc: BaseException) -> str:
    """The client library's error, named: 'PermissionError: The AWS Access Key Id ...'."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
