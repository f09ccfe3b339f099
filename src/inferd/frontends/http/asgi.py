"""The ASGI contract the HTTP frontend speaks (the parts of it used here), and running an answer
only as long as its client is there to read it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def until_disconnect(receive: Receive, answer: Coroutine[Any, Any, None]) -> None:
    """Run `answer` (which sends the response) to its end, or cancel it as soon as the client
    disconnects, so that the work behind a response nobody reads stops (the inference task, a
    stream's model). Its errors propagate. Call it only once the request body has been read in
    full: the next message on `receive` is then the disconnect."""
    work = asyncio.ensure_future(answer)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this handler is itself cancelled (server shutdown)
        for task in (watcher, work):
            task.cancel()
        await asyncio.gather(watcher, work, return_exceptions=True)
    if not work.cancelled():
        work.result()  # re-raise the answer's error, if any


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
