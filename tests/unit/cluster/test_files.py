"""Shipping a version's files: the archive's name follows its contents, and a node unpacks it
once into its cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.cluster.files import CACHE_ENV, cached_version, pack_version, unpack_version


def _model(root: Path, weights: bytes) -> Path:
    version = root / "m" / "1"
    (version / "sub").mkdir(parents=True)
    (root / "m" / "config.pbtxt").write_text('name: "m"')
    (version / "model.bin").write_bytes(weights)
    (version / "sub" / "extra.txt").write_text("x")
    (root / "m" / "2").mkdir()
    (root / "m" / "2" / "model.bin").write_bytes(b"other version")
    return version


def test_the_archive_is_named_by_its_contents(tmp_path: Path) -> None:
    first = pack_version(_model(tmp_path / "a", b"weights"))
    same = pack_version(_model(tmp_path / "b", b"weights"))
    changed = pack_version(_model(tmp_path / "c", b"weights!"))
    assert first.digest == same.digest != changed.digest
    assert first.version_folder == "m/1"


def test_a_node_unpacks_the_version_and_its_model_files_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    packed = pack_version(_model(tmp_path / "repo", b"weights"))
    assert cached_version(packed.digest, packed.version_folder) is None
    path = unpack_version(packed.digest, packed.archive, packed.version_folder)
    assert (path / "model.bin").read_bytes() == b"weights"
    assert (path / "sub" / "extra.txt").read_text() == "x"
    assert (path.parent / "config.pbtxt").read_text() == 'name: "m"'
    assert not (path.parent / "2").exists()  # other versions stay behind
    assert cached_version(packed.digest, packed.version_folder) == path
    # A second host of the node finds it there; unpacking again changes nothing.
    assert unpack_version(packed.digest, packed.archive, packed.version_folder) == path
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [packed.digest]
