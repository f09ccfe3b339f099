"""The HTTP frontend's watch of unary answers: a client that leaves a long answer cancels it,
a short answer is never watched, and a cancellation from elsewhere (the server's shutdown) is
not taken for one; either cancellation is handled, the handler going on to answer or return."""

from __future__ import annotations

import asyncio

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
        return "shutting down"
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


async def cancelled_answer(client_leaves: bool) -> tuple[str, bool, int]:
    """A long answer's handler cancelled from elsewhere (uvicorn at the end of the shutdown
    grace), its client gone first or not: what it answers, whether its work was cancelled,
    and the cancellations it has left pending once handled (asyncio's `cancelling`)."""
    watcher, client = DisconnectWatcher(), Client()
    work = asyncio.get_running_loop().create_future()
    handler = asyncio.ensure_future(answer(watcher, client, work))
    while client.reads == 0:
        await asyncio.sleep(WATCH_AFTER_S / 4)
    if client_leaves:
        client.left.set()
        await asyncio.sleep(0)  # the watch cancels the handler
    handler.cancel()
    return await handler, work.cancelled(), handler.cancelling()


def test_a_shutdown_cancellation_is_not_a_disconnect() -> None:
    assert asyncio.run(cancelled_answer(client_leaves=False)) == ("shutting down", True, 0)


def test_a_client_gone_before_a_shutdown_cancellation_is_not_answered() -> None:
    assert asyncio.run(cancelled_answer(client_leaves=True)) == ("client left", True, 0)
