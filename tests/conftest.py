"""Fixtures shared by unit and integration tests: tiny real ONNX models built on the spot."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import generate_models  # noqa: E402  (lives in examples/, shared with the example repository)

SMALL_MLP = (8, 16, 4)


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository (`simple` with config, `mlp` auto-completed), with a small MLP."""
    repository = tmp_path_factory.mktemp("repository")
    generate_models.simple_model(repository / "simple" / "1" / "model.onnx")
    (repository / "simple" / "config.pbtxt").write_text(generate_models.SIMPLE_CONFIG)
    generate_models.mlp_model(repository / "mlp" / "1" / "model.onnx", SMALL_MLP)
    return repository
