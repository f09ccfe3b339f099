"""What changed in a model repository between two looks: the pure half of poll mode.

A model's fingerprint is the (relative path, mtime, size) of every file under its folder
(in object storage: its entity tag or modification time, not its contents), so a changed
config, an added or removed version folder, or a rewritten model file all show up. The
engine owns the loop that acts on the changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# (path relative to the model folder, mtime or tag of the contents, size)
Fingerprint = frozenset[tuple[str, int | str, int]]


@dataclass(frozen=True, slots=True)
class RepositoryChanges:
    added: list[str]
    changed: list[str]
    removed: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def fingerprint_model(folder: Path) -> Fingerprint:
    """Every file under a model folder with its mtime and size (hidden entries ignored)."""
    entries: set[tuple[str, int | str, int]] = set()
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        # A folder counts even when empty: version folders decide which versions serve.
        entries.add((str(Path(root).relative_to(folder)) + os.sep, -1, -1))
        for name in files:
            if name.startswith("."):
                continue
            path = Path(root, name)
            try:
                info = path.stat()
            except FileNotFoundError:
                continue  # removed while we looked; the next poll sees the rest
            entries.add((str(path.relative_to(folder)), info.st_mtime_ns, info.st_size))
    return frozenset(entries)


def fingerprint_repository(repository: Path, names: list[str]) -> dict[str, Fingerprint]:
    """Fingerprints of the named model folders (from `layout.list_model_names`)."""
    return {name: fingerprint_model(repository / name) for name in names}


def repository_changes(
    before: dict[str, Fingerprint], after: dict[str, Fingerprint]
) -> RepositoryChanges:
    """Models added, changed and removed going from `before` to `after`, each sorted."""
    return RepositoryChanges(
        added=sorted(after.keys() - before.keys()),
        changed=sorted(n for n in after.keys() & before.keys() if after[n] != before[n]),
        removed=sorted(before.keys() - after.keys()),
    )
