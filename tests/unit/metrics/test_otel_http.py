"""OTLP/HTTP exports over one kept connection reach a real receiver, whether it keeps the
connection open, says it closes it after each answer, or closes it without saying so."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from inferd.metrics.otel_export import http_sender


@contextmanager
def receiver(keep_open: bool, silently: bool) -> Iterator[tuple[int, list[tuple[str, bytes]]]]:
    """A receiver's port and what it was sent (path, body); `silently`: it closes each
    connection after its answer all the same."""
    received: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_open else "HTTP/1.0"

        def do_POST(self) -> None:
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = self.close_connection or silently

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("keep_open", "silently"), [(True, False), (False, False), (True, True)])
def test_each_export_arrives(
    monkeypatch: pytest.MonkeyPatch, keep_open: bool, silently: bool
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with receiver(keep_open, silently) as (port, received):
        sender = http_sender(f"http://127.0.0.1:{port}/v1/traces?tenant=a")
        try:
            for payload in (b"one", b"two", b"three"):
                sender.send(payload, 1)
        finally:
            sender.shutdown()
    assert received == [("/v1/traces?tenant=a", p) for p in (b"one", b"two", b"three")]
