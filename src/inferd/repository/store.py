"""Where a model repository lives, behind one small interface: the engine asks a
`ModelRepository` for model names, a listing to poll, a model's folder and a local folder to
load each version from, and never learns whether the repository is a local folder
(`LocalRepository`, here), a bucket in object storage (`remote.RemoteRepository`) or several
of them (`repositories.RepositorySet`).

Every method but `known_model_names` may block on disk or network: the engine calls them in
a thread.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from inferd.repository.layout import ModelFolder, list_model_names, read_model_folder
from inferd.repository.poller import Fingerprint, fingerprint_repository


class ModelRepository(Protocol):
    @property
    def location(self) -> str:
        """Where the repository lives, for messages (a folder or a URL)."""
        ...

    def model_names(self) -> list[str]:
        """The model names in the repository now, sorted; raises `InferdError` when the
        repository cannot be read (a missing folder or bucket, refused credentials)."""
        ...

    def known_model_names(self) -> list[str]:
        """Without blocking for long: the model names as of the last look (a local folder is
        cheap to look at again; a bucket is listed by `model_names`, `scan` and `read_model`)."""
        ...

    def scan(self) -> dict[str, Fingerprint]:
        """The fingerprint of every model, from a listing only (nothing is downloaded)."""
        ...

    def read_model(self, name: str) -> ModelFolder:
        """One model's config and versions; raises `NotFound` when it is not there."""
        ...

    def fetch(self, folder: ModelFolder, version: int) -> Path:
        """The local folder to load `version` of `folder` from (downloaded first when the
        repository is remote); raises `InferdError` saying why it could not be had."""
        ...

    def retain(self, name: str, serving: Collection[Path]) -> None:
        """Forget what was fetched for model `name` except the version folders in `serving`
        (a remote repository deletes the other downloads)."""
        ...

    def close(self) -> None:
        """Release what the repository holds (its download cache)."""
        ...


class LocalRepository:
    """A folder on this machine: read in place, nothing to fetch or clean."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def model_names(self) -> list[str]:
        return list_model_names(self.root)

    def known_model_names(self) -> list[str]:
        return list_model_names(self.root)

    def scan(self) -> dict[str, Fingerprint]:
        return fingerprint_repository(self.root, list_model_names(self.root))

    def read_model(self, name: str) -> ModelFolder:
        return read_model_folder(self.root, name)

    def fetch(self, folder: ModelFolder, version: int) -> Path:
        return folder.versions[version]

    def retain(self, name: str, serving: Collection[Path]) -> None:
        pass

    def close(self) -> None:
        pass
