"""Model files sent in a load request (`file:<version>/<name>` parameters, Triton's repository
extension): checked, then written to a private temporary folder that serves as the model's
folder until it is unloaded or loaded again.

Every name is checked before anything is written, so a refused request leaves nothing on disk.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from inferd.core.errors import InvalidArgument
from inferd.repository.store import LocalRepository

PREFIX: Final = "file:"
NAME_MAX: Final = 255  # bytes in one path part, as most file systems allow
PATH_MAX: Final = 4096
_MODE: Final = 0o700


def is_file_parameter(key: str) -> bool:
    return key.startswith(PREFIX)


def check_model_files(files: Mapping[str, bytes], max_bytes: int) -> None:
    """Refuse a name that could leave the model's folder or that a file system cannot hold,
    a file that would be a folder of another, and more than `max_bytes` in all."""
    total = sum(len(content) for content in files.values())
    if total > max_bytes:
        raise InvalidArgument(
            f"the model files of the load request hold {total} bytes, more than the "
            f"{max_bytes} this server accepts (--model-load-files-max-bytes)"
        )
    folders: set[str] = set()
    for key in files:
        parts = _parts(key)
        folders.update("/".join(parts[:end]) for end in range(1, len(parts)))
    for key in files:
        if key[len(PREFIX) :] in folders:
            raise InvalidArgument(
                f"Invalid file parameter '{key}', it is also a folder of another file"
            )


def _parts(key: str) -> list[str]:
    relative = key[len(PREFIX) :]
    if not relative:
        raise InvalidArgument(f"Invalid file parameter '{key}': it names no file")
    if relative.startswith("/"):
        raise InvalidArgument(
            f"Invalid file parameter '{key}': an absolute path, it must be relative to the "
            "model's folder"
        )
    if "\\" in relative or "\x00" in relative:
        raise InvalidArgument(f"Invalid file parameter '{key}': '\\' and NUL are not allowed")
    if len(relative.encode()) > PATH_MAX:
        raise InvalidArgument(f"Invalid file parameter '{key[:64]}...': the path is too long")
    parts = relative.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidArgument(
                f"Invalid file parameter '{key}' must stay within model directory: empty, "
                "'.' and '..' parts are not allowed"
            )
        if len(part.encode()) > NAME_MAX:
            raise InvalidArgument(
                f"Invalid file parameter '{key[:64]}...': a part of the path is longer than "
                f"{NAME_MAX} bytes"
            )
    return parts


def write_model_files(name: str, files: Mapping[str, bytes]) -> Path:
    """Write checked `files` under a new private folder; return the repository root that holds
    them as model `name` (the root is what `remove_model_files` removes)."""
    root = Path(tempfile.mkdtemp(prefix="inferd-model-files-"))  # mode 0700
    try:
        model_dir = root / name
        model_dir.mkdir(mode=_MODE)
        for key, content in files.items():
            path = model_dir / key[len(PREFIX) :]
            path.parent.mkdir(mode=_MODE, parents=True, exist_ok=True)
            # A new file only (O_EXCL) and never through a link, readable by this user only.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            with os.fdopen(os.open(path, flags, 0o600), "wb") as out:
                out.write(content)
    except OSError as exc:
        remove_model_files(root)
        raise InvalidArgument(
            f"the model files of the load request cannot be written: {exc.strerror or exc}"
        ) from None
    except BaseException:
        remove_model_files(root)
        raise
    return root


def remove_model_files(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


class UploadedModels:
    """The private folders of the models serving from files sent in their load request;
    `max_bytes` None refuses such files."""

    def __init__(self, max_bytes: int | None) -> None:
        self._max_bytes = max_bytes
        self._roots: dict[str, Path] = {}

    async def write(
        self, name: str, config_override: dict[str, Any] | None, files: Mapping[str, bytes]
    ) -> LocalRepository:
        """The files checked and written: a one-model repository to load `name` from."""
        if self._max_bytes is None:
            raise InvalidArgument(
                "this server does not load model files sent in a load request; start it with "
                "--allow-model-load-files to allow it (the files are written to disk)"
            )
        if config_override is None:  # Triton's wording, with its reason
            raise InvalidArgument(
                f"failed to load '{name}', failed to poll from model repository: Load "
                "parameter 'config' must be specified for model file override"
            )
        check_model_files(files, self._max_bytes)
        return LocalRepository(await asyncio.to_thread(write_model_files, name, files))

    def serving(self, name: str, source: LocalRepository | None) -> None:
        """`name` now serves from `source` (None: from the repository): its previous upload,
        if any, goes."""
        previous = self._roots.pop(name, None)
        if source is not None:
            self._roots[name] = source.root
        if previous is not None:
            remove_model_files(previous)

    def unloaded(self, name: str) -> None:
        previous = self._roots.pop(name, None)
        if previous is not None:
            remove_model_files(previous)

    def clear(self) -> None:
        for root in self._roots.values():
            remove_model_files(root)
        self._roots.clear()
