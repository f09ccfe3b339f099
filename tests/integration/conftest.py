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
