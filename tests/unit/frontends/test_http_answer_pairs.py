"""Express answers held to leave in pairs (frontends/http/answer_pairs.py), written through
real transports on socket pairs, read at the far ends."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from inferd.frontends.http.answer_pairs import AnswerPairs


class Connection:
    """A server-side transport and the client's end of its socket."""

    def __init__(self, transport: asyncio.Transport, client: socket.socket) -> None:
        self.transport = transport
        self.client = client

    def received(self) -> bytes:
        """What reached the client so far (the transports write at once on an empty buffer)."""
        try:
            return self.client.recv(65536)
        except BlockingIOError:
            return b""


Scenario = Callable[[list[Connection]], Awaitable[None]]


def with_connections(scenario: Scenario) -> Callable[[], None]:
    """A test running `scenario` on a new loop, given three connections."""

    def test() -> None:
        async def run() -> None:
            loop = asyncio.get_running_loop()
            made: list[Connection] = []
            for _ in range(3):
                server_end, client_end = socket.socketpair()
                client_end.setblocking(False)
                transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, server_end)
                made.append(Connection(transport, client_end))
            try:
                await scenario(made)
            finally:
                for connection in made:
                    connection.transport.close()
                    connection.client.close()

        asyncio.run(run())

    test.__name__ = scenario.__name__
    return test


@with_connections
async def test_an_answer_alone_in_flight_leaves_at_once(connections: list[Connection]) -> None:
    pairs = AnswerPairs()
    pairs.in_flight = 1
    pairs.write(connections[0].transport, b"a")
    assert connections[0].received() == b"a"


@with_connections
async def test_with_others_in_flight_an_answer_leaves_with_the_next(
    connections: list[Connection],
) -> None:
    first, second, third = connections
    pairs = AnswerPairs()
    pairs.in_flight = 3
    pairs.write(first.transport, b"a")
    assert first.received() == b""
    pairs.write(second.transport, b"b")
    assert (first.received(), second.received()) == (b"a", b"b")
    pairs.write(third.transport, b"c")  # a new pair begins
    assert third.received() == b""
    pairs.write(first.transport, b"d")
    assert (third.received(), first.received()) == (b"c", b"d")


@with_connections
async def test_a_lone_held_answer_leaves_as_the_loop_pass_ends(
    connections: list[Connection],
) -> None:
    pairs = AnswerPairs()
    pairs.in_flight = 2
    pairs.write(connections[0].transport, b"a")
    assert connections[0].received() == b""
    await asyncio.sleep(0)
    assert connections[0].received() == b"a"
    pairs.write(connections[1].transport, b"b")  # the next pass holds anew
    assert connections[1].received() == b""
    await asyncio.sleep(0)
    assert connections[1].received() == b"b"


@with_connections
async def test_release_writes_the_held_answer_of_that_connection_only(
    connections: list[Connection],
) -> None:
    first, second, _ = connections
    pairs = AnswerPairs()
    pairs.in_flight = 2
    pairs.write(first.transport, b"a")
    pairs.release(second.transport)
    assert first.received() == b""
    pairs.release(first.transport)
    assert first.received() == b"a"
    await asyncio.sleep(0)  # nothing is written twice
    assert first.received() == b""


@with_connections
async def test_flush_writes_whatever_is_held(connections: list[Connection]) -> None:
    pairs = AnswerPairs()
    pairs.in_flight = 2
    pairs.flush()  # nothing held: nothing happens
    pairs.write(connections[2].transport, b"c")
    pairs.flush()
    assert connections[2].received() == b"c"


@with_connections
async def test_an_answer_held_for_a_closed_connection_is_dropped(
    connections: list[Connection],
) -> None:
    first, second, _ = connections
    pairs = AnswerPairs()
    pairs.in_flight = 2
    pairs.write(first.transport, b"a")
    first.transport.close()
    pairs.write(second.transport, b"b")  # the pair's other answer still leaves
    assert second.received() == b"b"
    await asyncio.sleep(0.01)
    first.client.setblocking(True)
    assert first.client.recv(1) == b""  # closed, with nothing written after the close
