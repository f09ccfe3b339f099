"""Writing the models a test generates into its repository folder."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write(repository: Path, name: str, code: str, config: str) -> None:
    """A Python model `name`, version 1: its `model.py` (`code`, dedented) and its config."""
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "1" / "model.py").write_text(textwrap.dedent(code))
    (repository / name / "config.pbtxt").write_text(config)
