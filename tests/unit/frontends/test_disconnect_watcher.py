"""The HTTP frontend's watch of unary answers: a client that leaves a long answer cancels it,
a short answer is never watched, and a cancellation from elsewhere is not taken for one."""

from __future__ import annotations

import asyncio

import pytest

from inferd.frontends.http.asgi import WATCH_AFTER_S, DisconnectWatcher, Message


class Client:
    """The ASGI `receive` of a request whose body was read: it answers only its disconnect."""

    def __init__(self) -> None:
        self.left = asyncio.Event()
        self.reads = 0

    async def receive(self) -> Message:
        self.reads += 1
        await self.left.wait()
        return {"type": "http.disconnect"}


async def answer(watcher: DisconnectWatcher, client: Client, work: asyncio.Future[None]) -> str:
    """What a handler does around its inference (`work`)."""
    task = watcher.start(client.receive)
    try:
        await work
    except asyncio.CancelledError:
        if watcher.disconnected(task):
            return "client left"
        raise
    finally:
        watcher.stop(task)
    return "answered"


def test_a_client_that_leaves_a_long_answer_cancels_it() -> None:
    async def scenario() -> tuple[str, bool]:
        watcher, client = DisconnectWatcher(), Client()
        work = asyncio.get_running_loop().create_future()
        handler = asyncio.ensure_future(answer(watcher, client, work))
        while client.reads == 0:  # watched after one to two rounds
            await asyncio.sleep(WATCH_AFTER_S / 4)
        client.left.set()
        return await handler, work.cancelled()

    assert asyncio.run(scenario()) == ("client left", True)


def test_a_short_answer_is_never_watched() -> None:
    async def scenario() -> tuple[str, int]:
        watcher, client = DisconnectWatcher(), Client()
        work = asyncio.get_running_loop().create_future()
        work.set_result(None)
        result = await answer(watcher, client, work)
        await asyncio.sleep(WATCH_AFTER_S * 3)  # rounds pass with nothing in flight
        return result, client.reads

    assert asyncio.run(scenario()) == ("answered", 0)


def test_another_cancellation_goes_on() -> None:
    async def scenario() -> None:
        watcher, client = DisconnectWatcher(), Client()
        work = asyncio.get_running_loop().create_future()
        handler = asyncio.ensure_future(answer(watcher, client, work))
        while client.reads == 0:
            await asyncio.sleep(WATCH_AFTER_S / 4)
        handler.cancel()  # e.g. the server shutting down, the client still there
        await handler

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(scenario())
