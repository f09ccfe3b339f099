"""A port another process holds stops `inferd serve` at start with one line naming the service
and the address, exit status 1, and no traceback, whichever of its three ports it is."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import running_server


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("service", "flag", "message"),
    [
        ("HTTP", "--http-port", "Address already in use"),
        ("gRPC", "--grpc-port", "the address is in use or not available"),
        ("metrics", "--metrics-port", "Address already in use"),
    ],
)
def test_a_taken_port_stops_the_start_with_one_line(
    tmp_path: Path, taken_port: int, service: str, flag: str, message: str
) -> None:
    ports = {"--http-port": "0", "--grpc-port": "0", "--metrics-port": "0", flag: str(taken_port)}
    command = [sys.executable, "-m", "inferd", "serve", "--model-repository", str(tmp_path)]
    command += [item for pair in ports.items() for item in pair]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 1, finished.stderr
    expected = f"cannot serve: cannot listen for {service} on 127.0.0.1:{taken_port}: {message}"
    assert expected in finished.stderr
    assert "Traceback" not in finished.stderr


def test_the_test_harness_reports_a_server_that_could_not_bind(
    tmp_path: Path, taken_port: int
) -> None:
    # The harness once handed such a server to a module's tests, with no ports, when stderr
    # ended before the exiting process was reaped; every test of the module then failed.
    starting = running_server(tmp_path, "--metrics-port", str(taken_port))
    with pytest.raises(RuntimeError, match="cannot listen for metrics"), starting:
        pass
