"""Finding and reading a model folder's config file: config.pbtxt, config.json or config.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ModelConfig, config_from_dict, parse_pbtxt

CONFIG_FILE_NAMES = ("config.pbtxt", "config.json", "config.yaml", "config.yml")


def find_config_file(model_dir: Path) -> Path | None:
    """The first config file present in a model folder, in Triton's order of preference."""
    for name in CONFIG_FILE_NAMES:
        candidate = model_dir / name
        if candidate.is_file():
            return candidate
    return None


def read_config_file(path: Path) -> ModelConfig:
    """Parse one config file into a `ModelConfig`; raises `InvalidArgument` naming the problem."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read {path.name}: {exc}") from exc
    return parse_config_text(text, path.name)


def parse_config_text(text: str, file_name: str) -> ModelConfig:
    """Parse a config file's text, its format told by `file_name`'s suffix."""
    if file_name.endswith(".pbtxt"):
        return parse_pbtxt(text, file_name)
    try:
        data = yaml.safe_load(text) if file_name.endswith((".yaml", ".yml")) else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"{file_name} is not valid: {exc}") from exc
    return config_from_dict(data if data is not None else {}, file_name)
