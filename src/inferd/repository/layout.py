"""The folders of a Triton-style model repository: `<repo>/<model>/<version>/<files>`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inferd.core.errors import InvalidArgument, NotFound
from inferd.core.model_config import ModelConfig
from inferd.repository.config_file import find_config_file, read_config_file


@dataclass(slots=True)
class ModelFolder:
    """One model's folder as found in its repository, before any backend looks at it.

    `versions` maps each version to the local folder it loads from: the folder itself in a
    local repository; for one in object storage, its place in the download cache (filled
    when the version is fetched).
    """

    name: str
    location: str  # where the model lives, for messages
    config: ModelConfig
    versions: dict[int, Path]


def check_model_name(name: str) -> None:
    """Reject names that could escape the repository folder or hide files."""
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        raise InvalidArgument(f"invalid model name '{name}'")


def list_model_names(repository: Path) -> list[str]:
    """Model folder names in a repository, sorted; hidden folders are ignored."""
    if not repository.is_dir():
        raise NotFound(f"model repository '{repository}' is not a folder")
    return sorted(p.name for p in repository.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_model_folder(repository: Path, name: str) -> ModelFolder:
    """Read one model's config file (empty config when none) and its numeric version folders."""
    check_model_name(name)
    path = repository / name
    if not path.is_dir():
        raise NotFound(f"model '{name}' is not in the repository")
    config_file = find_config_file(path)
    config = read_config_file(config_file) if config_file else ModelConfig()
    check_config_name(config, name)
    versions = {
        int(child.name): child
        for child in path.iterdir()
        if child.is_dir() and is_version(child.name)
    }
    return ModelFolder(name, str(path), config, versions)


def is_version(folder_name: str) -> bool:
    """Whether a folder of a model names a version (a positive integer)."""
    return folder_name.isdigit() and int(folder_name) > 0


def check_config_name(config: ModelConfig, name: str) -> None:
    """A config's name must be its folder's (or empty); it is set to it."""
    if config.name and config.name != name:
        raise InvalidArgument(
            f"config name '{config.name}' does not match the model folder name '{name}'"
        )
    config.name = name
