"""The local folder that versions downloaded from object storage load from.

Content-addressed: each download sits in a folder named by the digest of what it holds (the
listing of its files: path, entity tag, size), so an unchanged version is never downloaded
twice, a changed one gets a new folder while the old one keeps serving, and a folder present
is always complete: a download fills a hidden `.partial-*` folder first, renamed into place
only once every file arrived.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

_PARTIAL = ".partial-"


class DownloadCache:
    """Digest -> folder under `root`. With no `root`, a temporary folder removed by `close`."""

    def __init__(self, root: Path | None = None) -> None:
        self._temporary = root is None
        self.root = Path(tempfile.mkdtemp(prefix="inferd-models-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob(_PARTIAL + "*"):  # a download cut short by a crash
            shutil.rmtree(leftover, ignore_errors=True)

    def folder(self, digest: str) -> Path:
        return self.root / digest

    def fill(self, digest: str, download: Callable[[Path], None]) -> Path:
        """The folder of `digest`; when absent, `download` writes it into an empty folder
        first. A download that raises leaves nothing behind."""
        target = self.folder(digest)
        if target.is_dir():
            return target
        partial = Path(tempfile.mkdtemp(prefix=f"{_PARTIAL}{digest[:16]}-", dir=self.root))
        try:
            download(partial)
            os.rename(partial, target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return target

    def remove(self, digest: str) -> None:
        shutil.rmtree(self.folder(digest), ignore_errors=True)

    def close(self) -> None:
        if self._temporary:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # left when something is still in it
                self.root.rmdir()
