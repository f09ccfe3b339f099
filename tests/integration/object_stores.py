"""Starting a local object-storage server for a test (moto for S3, Azurite, a GCS emulator)
on a free loopback port, and stopping it."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from urllib.error import HTTPError

from tests.integration.server import free_port


@contextmanager
def local_store(
    command: Callable[[int], Sequence[str]], env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run `command(port)` until the block ends; yields its http://127.0.0.1:PORT once it
    answers HTTP (any status: an anonymous request may well be refused)."""
    port = free_port()
    process = subprocess.Popen(
        list(command(port)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(endpoint, process)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


def _wait_until_answering(endpoint: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return
        except HTTPError:
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{process.args} did not start") from None
            time.sleep(0.1)
