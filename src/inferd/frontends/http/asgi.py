"""The ASGI contract the HTTP frontend speaks (the parts of it used here), and running an answer
only as long as its client is there to read it: a stream for its whole length
(`until_disconnect`), a unary answer once it has taken a while (`DisconnectWatch`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A unary answer is watched for a disconnect once it has run this long. Watching every request
# (a task reading `receive`) cost 14 % of HTTP throughput; most finish sooner, and cost a timer.
WATCH_AFTER_S = 0.1


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


class DisconnectWatch:
    """Cancels the task it runs in when the client disconnects, once the block has run
    `WATCH_AFTER_S`; the block's cancellation then ends quietly and `disconnected` is set (its
    caller has nobody to answer). Use it only once the request body has been read in full."""

    __slots__ = ("_task", "_timer", "_watcher", "disconnected", "receive")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.disconnected = False
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None

    def __enter__(self) -> DisconnectWatch:
        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._arm)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._timer is not None and self._task is not None
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        # Swallow only the cancellation this watch caused (not, say, a server shutdown's).
        return (
            self.disconnected and exc_type is asyncio.CancelledError and self._task.uncancel() == 0
        )

    def _arm(self) -> None:
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        await _disconnected(self.receive)
        assert self._task is not None
        self.disconnected = True
        self._task.cancel()
