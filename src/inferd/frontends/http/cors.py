"""Cross-origin requests from web pages (CORS), only for the origins `--cors-allow-origin` names.

Without the flag the HTTP app is not wrapped at all: no CORS header is ever sent, so a page of
another origin can send a simple request but never read the answer, and a browser sends no
request that needs a preflight (JSON bodies, an `Authorization` header). With it, a request
whose `Origin` is listed (or any origin, for `*`) gets `Access-Control-Allow-Origin`, and its
preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here, before any API
group's restriction: a browser never sends the key on a preflight. Credentials (cookies) are
never allowed: inferd does not use them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import urlsplit

from inferd.frontends.http.asgi import Message, Receive, Scope, Send
from inferd.frontends.http.hosts import App

ANY: Final = "*"
_METHODS: Final = b"GET, POST, OPTIONS"
_MAX_AGE: Final = b"600"  # seconds a browser may reuse a preflight's answer
# Read by clients of binary responses (where the JSON part ends), so pages may read it too.
_EXPOSED: Final = b"inference-header-content-length"

# The answer depends on the Origin header (unless every origin is allowed): caches must keep one
# answer per origin.
_VARY: Final = (b"vary", b"Origin")


class CorsSettingsError(ValueError):
    """A `--cors-allow-origin` value that is not an origin: the message says which."""


def parse_origins(values: Iterable[str]) -> tuple[str, ...]:
    """The allowed origins from the flag's values (each may be a comma-separated list), in
    the form browsers send them (`scheme://host[:port]`, lower case), or `*`."""
    origins: list[str] = []
    for value in values:
        for item in value.split(","):
            origin = item.strip().lower().rstrip("/")
            if origin != ANY:
                parts = urlsplit(origin)
                if not parts.scheme or not parts.netloc or parts.path or parts.query:
                    raise CorsSettingsError(
                        f"--cors-allow-origin '{item.strip()}' is not an origin "
                        "(scheme://host[:port]) or '*'"
                    )
            origins.append(origin)
    return tuple(origins)


class Cors:
    """ASGI middleware adding CORS headers to `app`'s answers for the allowed origins."""

    def __init__(self, app: App, origins: Sequence[str]) -> None:
        self._app = app
        self._any = ANY in origins
        self._origins = frozenset(origin.encode() for origin in origins if origin != ANY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _header(scope, b"origin") if scope["type"] == "http" else None
        if origin is None:
            await self._app(scope, receive, send)
            return
        allowed = self._any or origin.lower() in self._origins
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            await self._preflight(scope, send, origin, allowed)
            return
        # Another origin gets no CORS header (the browser keeps the answer from the page), but
        # Vary still: a cache must not hand this answer to a listed origin's page.
        extra = [*self._allow(origin), (b"access-control-expose-headers", _EXPOSED)]
        if not allowed:
            extra = [_VARY]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self._app(scope, receive, send_with_cors)

    def _allow(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        if self._any:
            return [(b"access-control-allow-origin", b"*")]
        return [(b"access-control-allow-origin", origin), _VARY]

    async def _preflight(self, scope: Scope, send: Send, origin: bytes, allowed: bool) -> None:
        if not allowed:
            body = b'{"error":"cross-origin requests from this origin are not allowed"}'
            headers = [(b"content-type", b"application/json")]
            await _answer(send, 403, headers, body)
            return
        headers = [
            *self._allow(origin),
            (b"access-control-allow-methods", _METHODS),
            (b"access-control-max-age", _MAX_AGE),
        ]
        requested = _header(scope, b"access-control-request-headers")
        if requested:
            headers.append((b"access-control-allow-headers", requested))
        await _answer(send, 204, headers, b"")


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
