"""gRPC bidirectional calls over HTTP/2 (RFC 9113) on a plain socket, for a benchmark's client
that must cost next to nothing per response (grpc's Python clients cost about 100 us of CPU
per response, on the cores the server under test runs on).

As small as a benchmark needs: several calls of one method on one connection (each an HTTP/2
stream), no TLS, no compression, headers sent as literals and those received skipped, flow
control windows opened wide. A call that ends early (trailers, a reset, the connection
closed) raises.
"""

from __future__ import annotations

import socket
from typing import Final

WINDOW: Final = 2**31 - 1
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM = ACK = 0x1
END_HEADERS, PADDED = 0x4, 0x8
SETTINGS_INITIAL_WINDOW_SIZE: Final = 4


class Http2Calls:
    """`calls` calls of `path`: `send` gRPC messages on one, `receive` those of any."""

    def __init__(self, url: str, path: str, calls: int = 1) -> None:
        host, port = url.rsplit(":", 1)
        self._socket = socket.create_connection((host, int(port)))
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray()  # bytes received, not yet cut into frames
        # Per call, by its HTTP/2 stream id (odd, from 1): its DATA not yet cut into messages
        self._data = {2 * call + 1: bytearray() for call in range(calls)}
        self._unacknowledged = 0  # DATA bytes received since the last WINDOW_UPDATE
        fields = b"".join(
            b"\x00" + _hpack_string(name) + _hpack_string(value)  # a literal, not indexed
            for name, value in (
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", path.encode()),
                (b":authority", url.encode()),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
            )
        )
        window = SETTINGS_INITIAL_WINDOW_SIZE.to_bytes(2, "big") + WINDOW.to_bytes(4, "big")
        self._socket.sendall(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            + _frame(SETTINGS, 0, 0, window)
            + _frame(WINDOW_UPDATE, 0, 0, (WINDOW - 65535).to_bytes(4, "big"))
            + b"".join(_frame(HEADERS, END_HEADERS, stream, fields) for stream in self._data)
        )

    def __enter__(self) -> Http2Calls:
        return self

    def __exit__(self, *_: object) -> None:
        # No more requests on any call
        self._socket.sendall(b"".join(_frame(DATA, END_STREAM, s, b"") for s in self._data))
        self._socket.close()

    def send(self, call: int, messages: list[bytes]) -> None:
        """`messages` (serialised) on call number `call`, from 0."""
        stream = 2 * call + 1
        self._socket.sendall(
            b"".join(
                _frame(DATA, 0, stream, b"\x00" + len(message).to_bytes(4, "big") + message)
                for message in messages
            )
        )

    def receive(self) -> list[tuple[int, bytes]]:
        """The gRPC messages completed by the next read(s) of the socket, at least one, each
        with the number of its call."""
        messages: list[tuple[int, bytes]] = []
        while not messages:
            chunk = self._socket.recv(1 << 16)
            if not chunk:
                raise RuntimeError("the server closed the connection")
            self._buffer += chunk
            for stream in self._frames():
                data = self._data[stream]
                while len(data) >= 5 and len(data) >= 5 + (n := int.from_bytes(data[1:5], "big")):
                    messages.append((stream // 2, bytes(data[5 : 5 + n])))
                    del data[: 5 + n]
        return messages

    def _frames(self) -> set[int]:
        """Takes the whole frames received: DATA to `_data` (returns the streams that got
        some), answers to SETTINGS and PING."""
        buffer = self._buffer
        replies = []
        streams = set()
        while len(buffer) >= 9 and len(buffer) >= 9 + (size := int.from_bytes(buffer[:3], "big")):
            kind, flags = buffer[3], buffer[4]
            stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
            payload = bytes(buffer[9 : 9 + size])
            del buffer[: 9 + size]
            if kind == DATA:
                self._unacknowledged += size
                if flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                self._data[stream] += payload
                streams.add(stream)
            if (kind in (DATA, HEADERS) and flags & END_STREAM) or kind in (RST_STREAM, GOAWAY):
                raise RuntimeError(f"the server ended a call early (HTTP/2 frame type {kind})")
            if kind in (SETTINGS, PING) and not flags & ACK:
                replies.append(_frame(kind, ACK, 0, payload if kind == PING else b""))
        if self._unacknowledged >= 1 << 20:  # keep the windows wide open
            increment = self._unacknowledged.to_bytes(4, "big")
            replies += [_frame(WINDOW_UPDATE, 0, s, increment) for s in (0, *self._data)]
            self._unacknowledged = 0
        if replies:
            self._socket.sendall(b"".join(replies))
        return streams


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    header = len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big")
    return header + payload


def _hpack_string(value: bytes) -> bytes:
    if len(value) >= 127:  # one byte of length, no Huffman coding: all this client sends
        raise ValueError(f"header too long for this client: {value!r}")
    return bytes([len(value)]) + value
