"""Poll mode's change detection over real folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from inferd.repository.poller import RepositoryChanges, fingerprint_repository, repository_changes


def make_model(repository: Path, name: str, versions: tuple[int, ...] = (1,)) -> Path:
    folder = repository / name
    for version in versions:
        (folder / str(version)).mkdir(parents=True)
        (folder / str(version) / "model.onnx").write_bytes(b"weights")
    (folder / "config.pbtxt").write_text(f'name: "{name}"\n')
    return folder


def scan(repository: Path) -> dict[str, frozenset[tuple[str, int, int]]]:
    return fingerprint_repository(repository, sorted(p.name for p in repository.iterdir()))


def touch_later(path: Path) -> None:
    """Move the mtime clearly forward (some filesystems have coarse timestamps)."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))


def test_nothing_changed(tmp_path: Path) -> None:
    make_model(tmp_path, "a")
    assert not repository_changes(scan(tmp_path), scan(tmp_path))


def test_added_changed_and_removed_models(tmp_path: Path) -> None:
    make_model(tmp_path, "keep")
    edited = make_model(tmp_path, "edited")
    make_model(tmp_path, "gone")
    before = scan(tmp_path)

    make_model(tmp_path, "new")
    (edited / "config.pbtxt").write_text('name: "edited"\nmax_batch_size: 8\n')
    shutil.rmtree(tmp_path / "gone")

    changes = repository_changes(before, scan(tmp_path))
    assert changes == RepositoryChanges(added=["new"], changed=["edited"], removed=["gone"])


def test_rewritten_file_with_same_size_is_a_change(tmp_path: Path) -> None:
    folder = make_model(tmp_path, "a")
    before = scan(tmp_path)
    touch_later(folder / "1" / "model.onnx")
    assert repository_changes(before, scan(tmp_path)).changed == ["a"]


def test_new_and_removed_version_folders_are_changes(tmp_path: Path) -> None:
    folder = make_model(tmp_path, "a")
    before = scan(tmp_path)
    (folder / "2").mkdir()  # empty still counts: it changes which versions exist
    after_add = scan(tmp_path)
    assert repository_changes(before, after_add).changed == ["a"]
    shutil.rmtree(folder / "1")
    assert repository_changes(after_add, scan(tmp_path)).changed == ["a"]


def test_hidden_files_are_ignored(tmp_path: Path) -> None:
    folder = make_model(tmp_path, "a")
    before = scan(tmp_path)
    (folder / ".config.pbtxt.swp").write_text("editor state")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x").write_text("x")
    assert not repository_changes(before, scan(tmp_path))
