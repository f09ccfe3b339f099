"""uvicorn's httptools protocol with the server's error contract on the connection level:
a request that does not parse as HTTP, or whose request line and headers pass
`--http-max-header-bytes`, is answered with a JSON `{"error": ...}` (400, 431) and the
connection closed, where uvicorn would answer plain text. Nothing changes for a request that
parses: the parsing and the app call stay uvicorn's."""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_LIMIT_FLAG = "--http-max-header-bytes"
_REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}


class HeaderTooLarge(Exception):
    pass


def protocol_class(max_header_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's `http` setting, with this header limit."""
    return type("JsonErrorProtocol", (_JsonErrorProtocol,), {"max_header_bytes": max_header_bytes})


class _JsonErrorProtocol(HttpToolsProtocol):
    max_header_bytes = 0
    _head_bytes = 0
    _refusal: tuple[int, str] | None = None

    # The base class's callbacks are called directly rather than through super(): these run
    # for every header of every request.
    def on_url(self, url: bytes) -> None:
        # self.url starts empty with each request, so this also resets the count.
        self._head_bytes = len(self.url) + len(url)
        if self._head_bytes > self.max_header_bytes:
            self._refuse_head()
        HttpToolsProtocol.on_url(self, url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > self.max_header_bytes:
            self._refuse_head()
        HttpToolsProtocol.on_header(self, name, value)

    def _refuse_head(self) -> None:
        # Raising inside a parser callback makes httptools stop and report a parser error,
        # which uvicorn answers through send_400_response below.
        limit = self.max_header_bytes
        message = f"request line and headers are larger than the {limit}-byte limit"
        self._refusal = (431, f"{message} ({HEADER_LIMIT_FLAG})")
        raise HeaderTooLarge

    def send_400_response(self, msg: str) -> None:
        status, error = self._refusal or (400, "malformed HTTP request")
        body = orjson.dumps({"error": error})
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        defaults = self.server_state.default_headers
        head.extend(name + b": " + value + b"\r\n" for name, value in defaults)
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()
