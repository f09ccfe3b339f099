"""Plain-HTTP helpers for integration tests (no client library between the test and the wire)."""

from __future__ import annotations

import http.client
import json
from typing import Any


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = body.encode() if isinstance(body, str) else body
        connection.request(method, path, body=payload, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def post_json(port: int, path: str, document: Any) -> tuple[int, Any]:
    status, _, body = request(port, "POST", path, json.dumps(document))
    return status, json.loads(body) if body else None


def get_json(port: int, path: str) -> tuple[int, Any]:
    status, _, body = request(port, "GET", path)
    return status, json.loads(body) if body else None
