"""Express answers held to leave in groups (frontends/http/answer_groups.py), written through
real transports on socket pairs, read at the far ends."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import uvicorn
from uvicorn.server import ServerState

from inferd.frontends.http.answer_groups import GROUP, AnswerGroups
from inferd.frontends.http.express import Exchange
from inferd.frontends.http.protocol import protocol_class


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
    """A test running `scenario` on a new loop, given `GROUP + 1` connections."""

    def test() -> None:
        async def run() -> None:
            loop = asyncio.get_running_loop()
            made: list[Connection] = []
            for _ in range(GROUP + 1):
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
    groups = AnswerGroups()
    groups.in_flight = 1
    groups.write(connections[0].transport, b"a")
    assert connections[0].received() == b"a"


@with_connections
async def test_with_others_in_flight_answers_leave_a_group_at_a_time(
    connections: list[Connection],
) -> None:
    groups = AnswerGroups()
    groups.in_flight = len(connections)
    for index, connection in enumerate(connections[: GROUP - 1]):
        groups.write(connection.transport, b"%d" % index)
    assert [c.received() for c in connections] == [b""] * len(connections)
    groups.write(connections[GROUP - 1].transport, b"last")
    expected = [b"%d" % index for index in range(GROUP - 1)] + [b"last"]
    assert [c.received() for c in connections[:GROUP]] == expected
    groups.write(connections[GROUP].transport, b"next")  # the next group begins
    assert connections[GROUP].received() == b""


@with_connections
async def test_held_answers_leave_as_the_loop_pass_ends(connections: list[Connection]) -> None:
    groups = AnswerGroups()
    groups.in_flight = 2
    groups.write(connections[0].transport, b"a")
    groups.write(connections[1].transport, b"b")
    assert (connections[0].received(), connections[1].received()) == (b"", b"")
    await asyncio.sleep(0)
    assert (connections[0].received(), connections[1].received()) == (b"a", b"b")
    groups.write(connections[2].transport, b"c")  # the next pass holds anew
    assert connections[2].received() == b""
    await asyncio.sleep(0)
    assert connections[2].received() == b"c"


@with_connections
async def test_an_answer_written_with_few_in_flight_takes_those_held_along(
    connections: list[Connection],
) -> None:
    groups = AnswerGroups()
    groups.in_flight = 2
    groups.write(connections[0].transport, b"a")
    groups.in_flight = 1  # the other one ended without an answer (its client left)
    groups.write(connections[1].transport, b"b")
    assert (connections[0].received(), connections[1].received()) == (b"a", b"b")


@with_connections
async def test_release_writes_the_held_answers_if_one_is_that_connections(
    connections: list[Connection],
) -> None:
    first, second, third, *_ = connections
    groups = AnswerGroups()
    groups.in_flight = 3
    groups.write(first.transport, b"a")
    groups.write(second.transport, b"b")
    groups.release(third.transport)
    assert (first.received(), second.received()) == (b"", b"")
    groups.release(second.transport)
    assert (first.received(), second.received()) == (b"a", b"b")
    await asyncio.sleep(0)  # nothing is written twice
    assert (first.received(), second.received()) == (b"", b"")


@with_connections
async def test_an_answer_held_for_a_closed_connection_is_dropped(
    connections: list[Connection],
) -> None:
    first, second, *_ = connections
    groups = AnswerGroups()
    groups.in_flight = 2
    groups.write(first.transport, b"a")
    first.transport.close()
    await asyncio.sleep(0)  # the pass ends: the other held answers would still leave
    await asyncio.sleep(0.01)
    first.client.setblocking(True)
    assert first.client.recv(1) == b""  # closed, with nothing written after the close
    groups.write(second.transport, b"b")
    await asyncio.sleep(0)
    assert second.received() == b"b"


class Frontend:
    """What the protocol asks of the HTTP frontend for an express request."""

    max_body_bytes = 1 << 20

    async def express_infer(self, exchange: Exchange) -> None:
        await exchange.respond(200, b"{}", b"application/json", None)


def test_an_express_request_cancelled_before_it_ran_is_counted_out() -> None:
    """uvicorn's shutdown may cancel a request's task before its first step, when the task's
    own `finally` does not run: one whose body came in after the shutdown began still leaves
    the count of those in flight, or every later answer would be held. Each of the others
    counts itself out at its end."""

    async def run(cancelled: bool) -> None:
        protocol_type = protocol_class(16 * 1024, express=Frontend())  # type: ignore[arg-type]
        config = uvicorn.Config(app=Frontend(), http=protocol_type, lifespan="off", loop="none")  # type: ignore[arg-type]
        config.load()
        loop = asyncio.get_running_loop()
        server_end, client_end = socket.socketpair()
        with client_end:
            connection = protocol_type(
                config=config, server_state=ServerState(), app_state={}, _loop=loop
            )
            await loop.connect_accepted_socket(lambda: connection, server_end)
            request = b"POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
            if cancelled:  # its body ends after the shutdown began
                connection.data_received(request[:-1])
                connection.shutdown()
                connection.data_received(request[-1:])
            else:
                connection.data_received(request)
            groups = connection._answer_groups  # type: ignore[attr-defined]
            assert groups.in_flight == 1
            (task,) = connection.tasks
            if cancelled:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0)  # its done callbacks run
            assert task.cancelled() is cancelled
            assert groups.in_flight == 0 and not connection.tasks
            connection.transport.close()

    for cancelled in (True, False):
        asyncio.run(run(cancelled))
