"""Several model repositories served as one (Triton's repeated `--model-repository`): the
models of all of them, each name in exactly one."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from pathlib import Path

from inferd.core.errors import InferdError, InvalidArgument, NotFound
from inferd.repository.layout import ModelFolder, not_in_repository
from inferd.repository.poller import Fingerprint
from inferd.repository.store import ModelRepository


class RepositorySet:
    """The union of `members`. A model name found in two of them is not served: reading it
    raises `InvalidArgument` naming both, so its state says why."""

    def __init__(self, members: Sequence[ModelRepository]) -> None:
        self._members = tuple(members)
        self._owners: dict[str, ModelRepository] = {}  # who answered read_model last

    @property
    def location(self) -> str:
        return ", ".join(member.location for member in self._members)

    def model_names(self) -> list[str]:
        return sorted({name for member in self._members for name in member.model_names()})

    def known_model_names(self) -> list[str]:
        names: set[str] = set()
        for member in self._members:
            with contextlib.suppress(InferdError):  # an unreadable one hides no other
                names.update(member.known_model_names())
        return sorted(names)

    def scan(self) -> dict[str, Fingerprint]:
        merged: dict[str, Fingerprint] = {}
        for member in self._members:
            for name, fingerprint in member.scan().items():
                # A name in two repositories changes when either copy does.
                merged[name] = merged.get(name, frozenset()) | fingerprint
        return merged

    def read_model(self, name: str) -> ModelFolder:
        found: list[tuple[ModelRepository, ModelFolder]] = []
        for member in self._members:
            with contextlib.suppress(NotFound):
                found.append((member, member.read_model(name)))
        if not found:
            raise not_in_repository(name)
        if len(found) > 1:
            places = ", ".join(member.location for member, _ in found)
            raise InvalidArgument(
                f"model '{name}' is in more than one model repository ({places}); "
                "a model name must be unique across them"
            )
        owner, folder = found[0]
        self._owners[name] = owner
        return folder

    def fetch(self, folder: ModelFolder, version: int) -> Path:
        return self._owners[folder.name].fetch(folder, version)

    def retain(self, name: str, serving: Collection[Path]) -> None:
        for member in self._members:
            member.retain(name, serving)

    def close(self) -> None:
        for member in self._members:
            member.close()
