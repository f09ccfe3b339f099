"""Fixtures shared by unit and integration tests: tiny real ONNX models built on the spot."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import generate_models  # noqa: E402  (lives in examples/, shared with the example repository)

SMALL_MLP = (8, 16, 4)


@pytest.fixture(autouse=True)
def _collect_garbage_in_the_main_thread() -> Iterator[None]:
    """tritonclient's HTTP client closes its gevent pool in `__del__`, which fails in any thread
    but the main one (no gevent hub there), and warnings are errors here. A client caught in a
    reference cycle is freed by whichever thread next triggers a collection, such as a server's
    log reader. So each test's garbage is collected here, in the main thread; freezing what
    survives keeps the next collection to the next test's objects."""
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository (`simple` with config, `mlp` auto-completed), with a small MLP."""
    repository = tmp_path_factory.mktemp("repository")
    generate_models.simple_model(repository / "simple" / "1" / "model.onnx")
    (repository / "simple" / "config.pbtxt").write_text(generate_models.SIMPLE_CONFIG)
    generate_models.mlp_model(repository / "mlp" / "1" / "model.onnx", SMALL_MLP)
    return repository
