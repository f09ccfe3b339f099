"""`--allowed-hosts`: the `Host` names the HTTP and metrics ports answer, against DNS rebinding.

A web page can point a name it controls at 127.0.0.1 and then read a loopback server's
answers as its own origin; its requests carry that name in `Host`. Served are: the loopback
names, the address the server is bound to, the names given, and any IP address written as
such (a rebinding page's `Host` is always its own name, never an address), with any port.
A request without `Host` (HTTP/1.0) comes from no browser and is served.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable

import orjson

from inferd.core.errors import InvalidArgument
from inferd.frontends.http.asgi import Receive, Scope, Send

App = Callable[[Scope, Receive, Send], Awaitable[None]]

FLAG = "--allowed-hosts"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_REMEMBERED = 1024  # distinct accepted Host values kept for the one-lookup path


class ForeignHost(InvalidArgument):
    """A request whose `Host` this server does not answer (HTTP 421)."""


class AllowedHosts:
    """Which `Host` header values are served; `*` among the names serves every one."""

    __slots__ = ("_accepted", "_any", "_names")

    def __init__(self, names: Iterable[str]) -> None:
        given = {name.strip().lower() for name in names if name.strip()}
        self._any = "*" in given
        self._names = {name.strip("[]") for name in given}
        self._accepted: set[bytes] = set()

    def check(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Refuse a request with these headers unless its Host is allowed; the common case is
        one set lookup."""
        if self._any:
            return
        for key, value in headers:
            if key == b"host":
                if value not in self._accepted:
                    self._admit(value)
                return

    def _admit(self, value: bytes) -> None:
        host = _host_part(value.decode("latin-1").lower())
        if host not in self._names and not _is_address(host):
            shown = value.decode("latin-1")[:200]
            raise ForeignHost(f"Host '{shown}' is not served here ({FLAG})")
        if len(self._accepted) < _REMEMBERED:
            self._accepted.add(value)


def _host_part(host: str) -> str:
    """The name or address of a Host value, without its port and IPv6 brackets."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if ":" in host else host


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostGuard:
    """An ASGI app served only to requests whose Host is allowed (the metrics port)."""

    def __init__(self, app: App, hosts: AllowedHosts) -> None:
        self._app = app
        self._hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self._hosts.check(scope["headers"])
            except ForeignHost as exc:
                await _refuse(send, exc.message)
                return
        await self._app(scope, receive, send)


async def _refuse(send: Send, message: str) -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 421, "headers": headers})
    await send({"type": "http.response.body", "body": body})
