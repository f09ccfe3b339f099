"""Start the real `inferd serve` in a subprocess on free loopback ports, and stop it cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# Every frontend logs "<service> service listening on [scheme://]host:port" once bound.
_LISTENING = re.compile(r"(\S+) service listening on (?:\w+://)?([^\s:]+):(\d+)")
_READY = "inferd is ready"
_PORT_FLAGS = ("--grpc-port", "--metrics-port")


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    ports: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    # Set only by the ready line: the end of stderr also ends the wait, and at that moment
    # a server that failed to bind may not have been reaped yet (poll() still says running).
    ready: bool = False

    @property
    def http_port(self) -> int:
        return self.ports["HTTP"]

    @property
    def http_url(self) -> str:
        """host:port, as tritonclient.http wants it."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """host:port, as tritonclient.grpc wants it."""
        return f"127.0.0.1:{self.ports['gRPC']}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus endpoint."""
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def log_text(self) -> str:
        return "\n".join(self.log)

    def count_logged(self, text: str, expected: int, timeout: float = 5) -> int:
        """How often `text` is in the log, once it is there `expected` times or `timeout`
        passed: the server writes a line before it answers, but the line reaches the log
        through a pipe and this process's reading thread, maybe after the answer."""
        deadline = time.monotonic() + timeout
        while (count := self.log_text().count(text)) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        return count


def _pump(server: RunningServer, ready: threading.Event) -> None:
    assert server.process.stderr is not None
    for line in server.process.stderr:
        server.log.append(line.rstrip())
        match = _LISTENING.search(line)
        if match:
            server.ports[match.group(1)] = int(match.group(3))
        if _READY in line:
            server.ready = True
            ready.set()
    ready.set()


def free_port() -> int:
    """A port nothing listens on right now (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# A free port picked here may be taken by another process before the server binds it.
_START_ATTEMPTS = 3
_PORT_TAKEN = "Address already in use"


@contextmanager
def running_server(
    repository: Path | str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> Iterator[RunningServer]:
    server, pump = _start(repository, args, env, timeout)
    try:
        yield server
    finally:
        _close(server, pump)


def _start(
    repository: Path | str, args: tuple[str, ...], env: dict[str, str] | None, timeout: float
) -> tuple[RunningServer, threading.Thread]:
    attempt = 1
    while True:
        command = [
            sys.executable, "-m", "inferd", "serve",
            "--model-repository", str(repository), "--http-port", "0",
            # For these flags 0 disables the service, so a free port is picked here instead.
            *(arg for flag in _PORT_FLAGS if flag not in args for arg in (flag, str(free_port()))),
            *args,
        ]  # fmt: skip
        process = subprocess.Popen(
            command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        server = RunningServer(process)
        ready = threading.Event()
        pump = threading.Thread(target=_pump, args=(server, ready), daemon=True)
        pump.start()
        try:
            started = ready.wait(timeout) and server.ready and process.poll() is None
        except BaseException:  # a test's timeout or Ctrl-C: stop what was started
            _close(server, pump)
            raise
        if started:
            return server, pump
        _close(server, pump)
        if attempt == _START_ATTEMPTS or _PORT_TAKEN not in server.log_text():
            raise RuntimeError(f"inferd did not start:\n{server.log_text()}")
        attempt += 1


def _close(server: RunningServer, pump: threading.Thread) -> None:
    stop_server(server)
    pump.join(timeout=5)
    if server.process.stderr is not None:
        server.process.stderr.close()


def stop_server(server: RunningServer, timeout: float = 30) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while server.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.process.poll() is None:
            server.process.kill()
    return server.process.wait()
