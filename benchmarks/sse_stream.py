"""Server-sent event streams over HTTP/1.1 on plain sockets, for a benchmark's client that must
cost next to nothing per event (as `http2_stream` does for gRPC).

As small as a benchmark needs: one keep-alive connection per stream, one request at a time on
each, every connection read by one thread through a selector, the answers parsed by httptools
(a dependency of inferd's server); no TLS, no compression. An answer other than 200, or a
connection closed, raises.
"""

from __future__ import annotations

import selectors
import socket

import httptools


class SseStreams:
    """`connections` keep-alive connections that `send` POSTs to `path` and `receive` the
    events of."""

    def __init__(self, url: str, path: str, connections: int) -> None:
        host, port = url.rsplit(":", 1)
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {url}\r\nContent-Type: application/json\r\n"
            "Accept: text/event-stream\r\nContent-Length: "
        ).encode()
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        self._events: list[tuple[int, bytes | None]] = []  # completed, not yet received
        for number in range(connections):
            connection = socket.create_connection((host, int(port)))
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            answers = _Answers(number, self._events)
            parser = answers.parser = httptools.HttpResponseParser(answers)
            self._selector.register(connection, selectors.EVENT_READ, parser)
            self._sockets.append(connection)

    def __enter__(self) -> SseStreams:
        return self

    def __exit__(self, *_: object) -> None:
        self._selector.close()
        for connection in self._sockets:
            connection.close()  # again for those closed already: nothing

    def send(self, connection: int, body: bytes) -> None:
        """One request of `body` on connection number `connection`, from 0, whose answer
        before has ended."""
        head = self._head + str(len(body)).encode() + b"\r\n\r\n"
        self._sockets[connection].sendall(head + body)

    def close(self, connection: int) -> None:
        """Connection number `connection`, whose stream is over (so that the server closing
        it once idle is no error)."""
        self._selector.unregister(self._sockets[connection])
        self._sockets[connection].close()

    def receive(self) -> list[tuple[int, bytes | None]]:
        """The events completed by the next read(s) of the connections, at least one, each
        with its connection's number: an event's data (after `data: `), or None where that
        connection's answer ended (it takes its next request)."""
        while not self._events:
            for key, _ in self._selector.select():
                chunk = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
                if not chunk:
                    raise RuntimeError("the server closed a connection")
                key.data.feed_data(chunk)
        events = self._events.copy()
        self._events.clear()
        return events


class _Answers:
    """httptools' callbacks for one connection's answers: their events, and their ends, go
    to `events`."""

    def __init__(self, number: int, events: list[tuple[int, bytes | None]]) -> None:
        self._number = number
        self._events = events
        self._pending = b""  # the start of an event whose end has not arrived
        self._failed = False  # the answer being read is an error's
        self.parser: httptools.HttpResponseParser | None = None  # the parser calling these

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self._failed = self.parser.get_status_code() != 200

    def on_body(self, body: bytes) -> None:
        if self._failed:
            raise RuntimeError(f"a request failed: {body.decode(errors='replace')}")
        *events, self._pending = (self._pending + body).split(b"\n\n")
        self._events.extend((self._number, event.removeprefix(b"data: ")) for event in events)

    def on_message_complete(self) -> None:
        self._events.append((self._number, None))
