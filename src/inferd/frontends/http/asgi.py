"""The ASGI contract the HTTP frontend speaks (the parts of it used here), and running an answer
only as long as its client is there to read it: a stream for its whole length
(`until_disconnect`), a unary answer once it has taken a while (`DisconnectWatcher`); and
telling an answer cut by the server's shutdown from one cut by its client (`cut_by_shutdown`,
`DisconnectWatcher.disconnected`), the first answered as any error (`shutting_down`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

from inferd.core.errors import Unavailable
from inferd.core.running_loop import running_loop, running_task

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A unary answer is watched for a disconnect once it has run this long (up to twice as long).
# Watching every request (a task reading `receive`) cost 14 % of HTTP throughput; most finish
# sooner, and one that does has nothing worth stopping.
WATCH_AFTER_S = 0.1

# What an answer is cancelled with when the server's shutdown cuts it (`until_disconnect`).
SHUTTING_DOWN = "the server is shutting down"


def cut_by_shutdown(cancelled: asyncio.CancelledError) -> bool:
    """Whether an answer run by `until_disconnect` was cancelled by the server's shutdown (it
    may still end its response, as a stream does with an error event), rather than by its
    client leaving (nobody reads what it would write)."""
    return cancelled.args == (SHUTTING_DOWN,)


def shutting_down() -> Unavailable:
    """The error of an answer cut by the server's shutdown: answered as any error is, 503 in
    the endpoint's own error shape before its response has started (a stream's last event
    after), rather than uvicorn's 500 and traceback for a cancelled handler."""
    return Unavailable(SHUTTING_DOWN)


def shutdown_error(cancelled: asyncio.CancelledError) -> Unavailable:
    """`shutting_down()` for an answer run by `until_disconnect` that the server's shutdown
    cancelled; a cancellation for its client leaving is raised again (nobody reads an answer)."""
    if not cut_by_shutdown(cancelled):
        raise cancelled
    return shutting_down()


@contextlib.contextmanager
def shutdown_as_error() -> Iterator[None]:
    """Around the wait of an answer run by `until_disconnect`, before its response starts: the
    server's shutdown cancelling it becomes `shutting_down()`, answered as any error (503 in
    the endpoint's own shape); a client leaving still cancels it."""
    try:
        yield
    except asyncio.CancelledError as cancelled:
        raise shutdown_error(cancelled) from None


async def until_disconnect(receive: Receive, answer: Coroutine[Any, Any, None]) -> None:
    """Run `answer` (which sends the response) to its end, or cancel it as soon as the client
    disconnects, so that the work behind a response nobody reads stops (the inference task, a
    stream's model). Its errors propagate. Call it only once the request body has been read in
    full: the next message on `receive` is then the disconnect.

    When this handler is itself cancelled (uvicorn cancels what still runs when the shutdown
    grace expires), `answer` is cancelled with `SHUTTING_DOWN`; if it ends its response
    instead of being cancelled, the handler returns as it does (or raises its error), so that
    uvicorn neither logs the cancellation as a failure nor cuts the response short."""
    work = asyncio.ensure_future(answer)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # a client leaving ends the watcher, never this wait
        work.cancel(SHUTTING_DOWN)
        await asyncio.wait((work,))
        if work.cancelled():
            raise
        running_task().uncancel()  # handled: the answer ended its response
    finally:  # the answer, its watcher, or both are done, or the handler is cancelled again
        for task in (watcher, work):
            task.cancel()
        await asyncio.gather(watcher, work, return_exceptions=True)
    if not work.cancelled():
        work.result()  # re-raise the answer's error, if any


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class DisconnectWatcher:
    """Watches a frontend's unary answers for their client's disconnect, only those still
    running after `WATCH_AFTER_S` to `2 * WATCH_AFTER_S`: one timer per period, while any
    answer is in flight, arms a watch for each answer it already saw at its previous round.
    An answer costs two dict updates; a timer or a task of its own would cost more (a uvloop
    timer armed and cancelled per request: about 6 us).

    The handler calls `start` once the request body is read in full, `disconnected` when its
    task is cancelled (True: the client left, and nobody is to be answered; False: the server's
    shutdown cut it, answered `shutting_down()`), and `stop` at its end, whatever happened.
    """

    __slots__ = ("_armed", "_gone", "_in_flight", "_seen", "_timer")

    def __init__(self) -> None:
        self._in_flight: dict[asyncio.Task[Any], Receive] = {}
        self._seen: set[asyncio.Task[Any]] = set()  # in flight at the previous round
        self._armed: dict[asyncio.Task[Any], asyncio.Task[None]] = {}
        self._gone: set[asyncio.Task[Any]] = set()  # cancelled for their client
        self._timer: asyncio.TimerHandle | None = None

    def start(self, receive: Receive) -> asyncio.Task[Any]:
        """Watch the running task's answer; returns the task, for `disconnected` and `stop`."""
        task = running_task()
        self._in_flight[task] = receive
        if self._timer is None:
            self._timer = running_loop().call_later(WATCH_AFTER_S, self._round)
        return task

    def disconnected(self, task: asyncio.Task[Any]) -> bool:
        """Whether the task's cancellation came from its client leaving (a watch cancelled it)
        rather than from the server's shutdown (uvicorn cancels the handlers still running when
        the grace expires). Either way the cancellation is handled: the task goes on, to answer
        or to return."""
        while task.cancelling():
            task.uncancel()
        return task in self._gone

    def stop(self, task: asyncio.Task[Any]) -> None:
        del self._in_flight[task]
        watch = self._armed.pop(task, None)
        if watch is not None:
            watch.cancel()
            self._gone.discard(task)

    def _round(self) -> None:
        for task, receive in self._in_flight.items():
            if task in self._seen and task not in self._armed:
                self._armed[task] = asyncio.ensure_future(self._watch(task, receive))
        self._seen = set(self._in_flight)
        self._timer = (
            running_loop().call_later(WATCH_AFTER_S, self._round) if self._in_flight else None
        )

    async def _watch(self, task: asyncio.Task[Any], receive: Receive) -> None:
        await _disconnected(receive)
        self._gone.add(task)
        task.cancel()
