"""Reading a request body under `--http-max-body-bytes`, inflating gzip and deflate as the body
arrives: the limit applies to the inflated bytes too, and a body that inflates past it is
refused as soon as it does, without inflating (or receiving) the rest."""

from __future__ import annotations

import zlib

from inferd.core.errors import InvalidArgument, PayloadTooLarge
from inferd.frontends.http.asgi import Receive

_WINDOW_BITS = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}
LIMIT_FLAG = "--http-max-body-bytes"


class ClientDisconnected(Exception):
    pass


def header_int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(
            f"header value '{value.decode(errors='replace')}' is not an integer"
        ) from None


def too_large(limit: int, what: str = "request body") -> PayloadTooLarge:
    return PayloadTooLarge(f"{what} is larger than the {limit}-byte limit ({LIMIT_FLAG})")


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The whole body, inflated when its Content-Encoding says so."""
    declared = headers.get(b"content-length")
    if declared is not None and header_int(declared) > limit:
        raise too_large(limit)
    encoding = headers.get(b"content-encoding")
    inflater = None if encoding in (None, b"identity") else _Inflater(encoding, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk if inflater is None else inflater.feed(chunk))
        if not message.get("more_body", False):
            break
    if inflater is not None:
        inflater.finish()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Inflater:
    """Inflates a body chunk by chunk, never holding more than `limit` inflated bytes."""

    __slots__ = ("_encoding", "_left", "_limit", "_zlib")

    def __init__(self, encoding: bytes, limit: int) -> None:
        bits = _WINDOW_BITS.get(encoding)
        if bits is None:
            name = encoding.decode(errors="replace")
            raise InvalidArgument(f"unsupported Content-Encoding '{name}' (use gzip or deflate)")
        self._encoding = encoding.decode()
        self._zlib = zlib.decompressobj(bits)
        self._limit = limit
        self._left = limit

    def feed(self, chunk: bytes) -> bytes:
        try:
            # One byte more than is left tells "exactly at the limit" from "past it".
            data = self._zlib.decompress(chunk, self._left + 1)
        except zlib.error as exc:
            raise InvalidArgument(f"body is not valid {self._encoding}: {exc}") from None
        self._left -= len(data)
        if self._left < 0:
            raise too_large(self._limit, "inflated request body")
        return data

    def finish(self) -> None:
        if not self._zlib.eof:
            raise InvalidArgument(f"body is not valid {self._encoding}: the stream is truncated")
