"""What `inferd serve` logs about itself, read from a real server's stderr."""

from __future__ import annotations

from pathlib import Path

from tests.integration.server import running_server


def test_uvicorn_lifecycle_lines_appear_once(model_repository: Path) -> None:
    # HTTP and metrics are both uvicorn servers in one process; each would log these lines.
    with running_server(model_repository) as server:
        assert {"HTTP", "metrics"} <= server.ports.keys()
    assert server.process.returncode == 0
    for line in ("Started server process", "Shutting down", "Finished server process"):
        assert sum(line in logged for logged in server.log) == 1, server.log_text()
