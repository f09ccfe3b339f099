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
    """Reject names that could escape the repository folder or hide files, in Triton's words
    where Triton refuses them too (its QA, L0_input_validation, checks the wording)."""
    trimmed = name.strip()
    if not trimmed:
        raise InvalidArgument("Model name cannot be empty. Please enter a valid name to deploy.")
    if trimmed == ".." or "/" in name:
        raise InvalidArgument(
            f"invalid model name '{name}', model name must not contain path traversal characters"
        )
    if "\\" in name or "\x00" in name or trimmed == ".":
        raise InvalidArgument(
            f"invalid model name '{name}': it must name a folder of the repository"
        )
    if name.startswith("."):
        # Triton would look for it (and not find it: `...` is a valid name there); inferd never
        # serves a hidden folder.
        raise InvalidArgument(
            f"invalid model name '{name}', failed to poll from model repository: a name "
            "starting with '.' is a hidden folder, never a model"
        )


def not_in_repository(name: str) -> NotFound:
    """A load of a model the repository lacks; Triton's QA looks for the words "failed to poll
    from model repository"."""
    return NotFound(
        f"failed to poll from model repository: model '{name}' is not in the repository"
    )


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
        raise not_in_repository(name)
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
