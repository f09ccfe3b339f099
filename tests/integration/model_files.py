"""Writing the models a test generates into its repository folder."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write(repository: Path, name: str, code: str, config: str) -> None:
    """A Python model `name`, version 1: its `model.py` (`code`, dedented) and its config."""
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "1" / "model.py").write_text(textwrap.dedent(code))
    (repository / name / "config.pbtxt").write_text(config)


def simple_copy(model_repository: Path, repository: Path, name: str, extra_config: str) -> None:
    """`simple` of the session's repository again as `name` (its model file linked), with
    `extra_config` added to its config."""
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "1" / "model.onnx").symlink_to(model_repository / "simple/1/model.onnx")
    config = (model_repository / "simple" / "config.pbtxt").read_text()
    renamed = config.replace('name: "simple"', f'name: "{name}"')
    (repository / name / "config.pbtxt").write_text(renamed + extra_config)
