"""A model version's files, packed on the ingress and unpacked once per node.

The ingress packs the model folder's own files (its config and the like) and the one version
folder into a tar archive named by the SHA-256 of its contents; a host unpacks it into a cache
folder of that name unless another host on its node already did, so a node fetches a version
once however many of its instances use it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "INFERD_CLUSTER_CACHE"


@dataclass(frozen=True, slots=True)
class PackedVersion:
    digest: str
    archive: bytes
    version_folder: str  # the version folder's path inside the archive


def pack_version(version_path: Path) -> PackedVersion:
    """The version folder and the files (not folders) beside it, relative to the model folder."""
    model_path = version_path.parent
    members = [p for p in sorted(model_path.iterdir()) if p.is_file()]
    members += sorted(p for p in version_path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in members:
            name = path.relative_to(model_path.parent).as_posix()
            digest.update(name.encode() + b"\0")
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            archive.add(path, arcname=name, recursive=False)
    folder = version_path.relative_to(model_path.parent).as_posix()
    return PackedVersion(digest.hexdigest(), buffer.getvalue(), folder)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "inferd-cluster")


def cached_version(digest: str, version_folder: str) -> Path | None:
    """The unpacked version folder when this node holds it already."""
    path = cache_root() / digest / version_folder
    return path if path.is_dir() else None


def unpack_version(digest: str, archive: bytes, version_folder: str) -> Path:
    """Unpack into the cache (atomically: hosts on one node may race), the version folder."""
    final = cache_root() / digest
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=final.parent))
        with tarfile.open(fileobj=io.BytesIO(archive)) as packed:
            packed.extractall(staging, filter="data")
        try:
            staging.rename(final)
        except OSError:  # another host of this node got there first
            shutil.rmtree(staging, ignore_errors=True)
    return final / version_folder
