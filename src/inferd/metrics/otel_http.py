"""A transport for the SDK's OTLP/HTTP exporter over plain HTTP without a proxy: one kept-open
`http.client` connection. Imported only in `opentelemetry` mode (the `otel` extra).

The export thread sends one request at a time, so a pool is not needed, nor urllib3's work per
request (its pool lookup, URL parsing and header checks: about half of an export's CPU, which
at the default 512 spans a request came to a few µs per traced request). The SDK's client keeps
its part: retries, backoff, compression and headers.
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport


@dataclass(frozen=True, slots=True)
class _Result(BaseHTTPResult):
    body: bytes = b""
    fields: http.client.HTTPMessage | None = field(default=None, compare=False)

    def content(self) -> bytes:
        return self.body

    def headers(self) -> Mapping[str, str]:
        # A message's headers are read case-insensitively, as the SDK asks.
        return cast(Mapping[str, str], self.fields or {})


class PlainTransport(BaseHTTPTransport):
    """Requests over one kept-open connection to the URL's host, opened again when needed."""

    def __init__(self) -> None:
        self._connection: http.client.HTTPConnection | None = None
        self._netloc = ""

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        parts = urlsplit(url)
        connection = self._connection
        if connection is None or parts.netloc != self._netloc:
            self.close()
            connection = self._connection = http.client.HTTPConnection(parts.netloc)
            self._netloc = parts.netloc
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(method, target, data, headers or {})
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()  # a kept connection the receiver closed: the client retries once
            return _Result(error=error)
        if response.will_close:
            self.close()
        return _Result(response.status, response.reason, None, body, response.headers)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def is_connection_error(self, exception: Exception | None) -> bool:
        return isinstance(exception, OSError | http.client.HTTPException)
