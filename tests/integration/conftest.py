from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import RunningServer, running_server


@pytest.fixture(scope="session")
def server(model_repository: Path) -> Iterator[RunningServer]:
    """One real server on the shared test repository for the whole session."""
    with running_server(model_repository) as running:
        yield running


@pytest.fixture(scope="module")
def explicit_server(model_repository: Path) -> Iterator[RunningServer]:
    """Explicit control mode with only `simple` loaded at start (one server per module)."""
    with running_server(
        model_repository, "--model-control-mode", "explicit", "--load-model", "simple"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def shm_server(model_repository: Path) -> Iterator[RunningServer]:
    """`--enable-shared-memory` (system and CUDA regions), one server per module."""
    with running_server(model_repository, "--enable-shared-memory") as running:
        yield running
