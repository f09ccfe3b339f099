"""A repository in object storage, read through a real fsspec filesystem (fsspec's in-memory
one: the S3 protocol itself is tested against a real S3 server in
tests/integration/test_object_storage.py): listing, content-addressed downloads, cleaning."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferd.core.errors import InvalidArgument, NotFound, Unavailable
from inferd.repository.download_cache import DownloadCache
from inferd.repository.layout import ModelFolder
from inferd.repository.remote import RemoteRepository

fsspec = pytest.importorskip("fsspec")


@pytest.fixture
def bucket() -> Iterator[tuple[Any, str]]:
    """fsspec's in-memory filesystem (one store per process) and a root of this test's own."""
    filesystem = fsspec.filesystem("memory")
    root = f"/{uuid.uuid4().hex}/models"
    yield filesystem, root
    filesystem.rm(root.rsplit("/", 1)[0], recursive=True)


def put(bucket: tuple[Any, str], files: dict[str, bytes]) -> None:
    filesystem, root = bucket
    for relative, data in files.items():
        filesystem.pipe_file(f"{root}/{relative}", data)


def repository(bucket: tuple[Any, str], cache: Path) -> RemoteRepository:
    filesystem, root = bucket
    return RemoteRepository(filesystem, root, "mem://models", DownloadCache(cache))


MODEL = {
    "m/config.pbtxt": b'name: "m" backend: "onnxruntime"',
    "m/labels.txt": b"cat\ndog\n",
    "m/1/model.onnx": b"one",
    "m/2/model.onnx": b"two",
}


def test_listing_finds_models_and_fingerprints_them(
    bucket: tuple[Any, str], tmp_path: Path
) -> None:
    put(bucket, {**MODEL, "n/1/model.onnx": b"n", "README.md": b"beside", ".hidden/1/x": b"x"})
    repo = repository(bucket, tmp_path)
    assert repo.known_model_names() == []  # nothing listed yet
    scan = repo.scan()
    assert sorted(scan) == ["m", "n"] == repo.known_model_names() == repo.model_names()
    assert {path for path, _, _ in scan["m"]} == {
        "config.pbtxt",
        "labels.txt",
        "1/model.onnx",
        "2/model.onnx",
    }
    before = scan["m"]
    put(bucket, {"m/2/model.onnx": b"TWO"})  # rewritten, same size
    assert repo.scan()["m"] != before
    assert list(tmp_path.iterdir()) == []  # listing downloads nothing


@pytest.fixture
def model_m(bucket: tuple[Any, str], tmp_path: Path) -> tuple[RemoteRepository, ModelFolder]:
    """MODEL in the bucket, and its folder as read from there (nothing downloaded yet)."""
    put(bucket, MODEL)
    repo = repository(bucket, tmp_path)
    return repo, repo.read_model("m")


def test_a_version_is_downloaded_with_the_model_folder_files_and_cleaned(
    bucket: tuple[Any, str], model_m: tuple[RemoteRepository, ModelFolder], tmp_path: Path
) -> None:
    repo, folder = model_m
    assert folder.config.backend == "onnxruntime"
    assert sorted(folder.versions) == [1, 2]
    path = repo.fetch(folder, 2)
    assert (path / "model.onnx").read_bytes() == b"two"
    assert (path.parent / "labels.txt").read_bytes() == b"cat\ndog\n"
    assert not (path.parent / "1").exists() and not (path.parent / "config.pbtxt").exists()

    # Unchanged contents: the same folder, not downloaded again; changed ones: a new folder.
    assert repo.fetch(repo.read_model("m"), 2) == path
    put(bucket, {"m/2/model.onnx": b"new two"})
    changed = repo.fetch(repo.read_model("m"), 2)
    assert changed != path and (changed / "model.onnx").read_bytes() == b"new two"
    assert path.exists()  # the old one serves until it is let go

    repo.retain("m", [changed])
    assert not path.exists() and changed.exists()
    repo.retain("m", [])
    assert list(tmp_path.iterdir()) == []


def test_a_failed_download_leaves_nothing_and_says_why(
    bucket: tuple[Any, str], model_m: tuple[RemoteRepository, ModelFolder], tmp_path: Path
) -> None:
    repo, folder = model_m
    filesystem, root = bucket
    filesystem.rm(f"{root}/m/1/model.onnx")  # gone between the listing and the download
    with pytest.raises(Unavailable, match=r"downloading version 1 of model 'm' from mem://models"):
        repo.fetch(folder, 1)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_model_and_a_bad_config(bucket: tuple[Any, str], tmp_path: Path) -> None:
    put(bucket, {"bad/config.pbtxt": b'name: "other"', "bad/1/model.onnx": b"x"})
    repo = repository(bucket, tmp_path)
    with pytest.raises(NotFound, match="'absent' is not in the repository"):
        repo.read_model("absent")
    with pytest.raises(InvalidArgument, match="does not match the model folder name"):
        repo.read_model("bad")
    with pytest.raises(InvalidArgument, match="invalid model name"):
        repo.read_model("../bad")


def test_download_cache_is_complete_or_absent(tmp_path: Path) -> None:
    (tmp_path / ".partial-0123-x").mkdir()  # left by a crash
    cache = DownloadCache(tmp_path)
    assert list(tmp_path.iterdir()) == []

    def failing(into: Path) -> None:
        (into / "half").write_bytes(b"x")
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        cache.fill("abc", failing)
    assert list(tmp_path.iterdir()) == []
    folder = cache.fill("abc", lambda into: (into / "whole").write_bytes(b"x"))
    assert folder == cache.folder("abc") and (folder / "whole").exists()

    temporary = DownloadCache()
    temporary.fill("abc", lambda into: None)
    temporary.close()
    assert not temporary.root.exists()
