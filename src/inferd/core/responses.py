"""The per-request response channel of a decoupled model: the backend fills it, the engine
drains it.

A decoupled model answers a request with zero or more responses, then a final flag, from
any thread (the instance's, or one of the model's own, even after `execute` returned). Each
send is handed to the event loop in order; the engine's `stream` awaits them one by one, so
a stream needs no task of its own. Cancellation flows the other way: `cancel` marks the
channel, a model polls `cancelled`, and later sends are dropped. The reader calls `cancel`
whenever it leaves the stream, also one that had ended (the final response, or an error: the
server's own, say an iterative request that idled out): it then marks nothing, but its
`on_end` listeners learn at once that nothing more will be read, and free what they keep for
the request. The server ending a stream of its own accord (`end`: its model is being unloaded)
cancels the request for the model as a client's going away does, after the reader's last
response (the error that says why).

Backpressure: at most `MAX_UNREAD` responses wait for the stream's reader. A send from a
model's thread beyond that blocks until the reader takes one (or the request is cancelled),
so a slow client of a fast model holds the model back instead of growing the server's
memory. A send on the event loop's own thread (the server's failure of an execution) and the
final flag never block: they could not be read while the loop waits, and end the stream. The
iterative scheduler asks `behind` and runs no step of a request whose reader is behind, so
one slow client does not stall a running batch (`on_room` wakes it).

Holding: while a scheduler `hold`s the channel (the iterative scheduler does, while a step of
its request runs), sends queue without waking the reader or the loop; `release` wakes it with
all of them at once. So the loop does not turn to a step's responses (one per request of the
running batch) while the model is still sending them, and the next step starts on the
instance before the loop encodes them. Holds nest: the scheduler holds the channel for
the next step before it releases the step before, and that release hands the reader what
was sent so far but keeps holding for the step now running. A send that would block releases
every hold.

Reading directly: while the reader waits in `get`, a consumer that can take a response on the
event loop there and then (`read_directly`: the gRPC stream, which encodes it into its
outbox) is offered each one first, in order, so a step's responses reach their stream in the
callback that releases them, with no task woken per response. What it declines, and every
response after that, is left to `get`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from inferd.core.errors import InferdError, Internal
from inferd.core.running_loop import running_loop
from inferd.core.types import Array, InferResponse

MAX_UNREAD = 32  # responses of one request waiting for its reader before sends block


class StreamItem(NamedTuple):
    """One send: outputs (None: the final flag alone), or an error; `final` ends the stream.
    A named tuple: made once per token on the model's thread, where a frozen dataclass's
    construction costs about twice as much."""

    outputs: dict[str, Array] | None
    error: InferdError | None
    final: bool


class ResponseSink(Protocol):
    """Where a backend sends the responses of one request (thread-safe)."""

    @property
    def cancelled(self) -> bool:
        """The client went away: the model may stop; its sends are dropped."""

    def send(
        self,
        outputs: dict[str, Array] | None = None,
        error: InferdError | None = None,
        final: bool = False,
    ) -> bool:
        """Queue one response; False when dropped (after the final one, or cancelled)."""


class ResponseTaker(Protocol):
    """A consumer of a stream's responses that can take one synchronously, on the event loop
    (`Engine.stream` reads its channel directly for it, `ResponseChannel.read_directly`)."""

    def offer(self, response: InferResponse) -> bool:
        """Take `response` now (True), or leave it to be yielded as usual (False: no room for
        it now, or it cannot take it as it is)."""


class ResponseChannel:
    """A `ResponseSink` drained on the event loop it was made on."""

    __slots__ = (
        "_cancelled",
        "_closed",
        "_direct",
        "_end_callbacks",
        "_holds",
        "_items",
        "_lock",
        "_loop",
        "_loop_thread",
        "_on_room",
        "_room",
        "_unread",
        "_waiter",
        "_waking",
    )

    def __init__(self) -> None:
        self._loop = running_loop()
        self._loop_thread = threading.get_ident()
        # Appended by `send` (in its order, under the lock), taken by `get` on the loop.
        self._items: deque[StreamItem] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._waking = False  # a `_wake` is scheduled on the loop and has not run yet
        self._holds = 0  # holds not yet released: sends queue without waking the reader
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # the reader took a response
        self._unread = 0  # sent and not yet taken by `get`
        self._on_room: list[Callable[[], None]] = []
        self._closed = False  # the final response (or an error) was sent
        self._cancelled = False
        self._end_callbacks: list[Callable[[], None]] = []
        self._direct: Callable[[StreamItem], bool] | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def behind(self) -> bool:
        """As many responses as allowed wait for the reader: a further send would block."""
        return self._unread >= MAX_UNREAD

    def send(
        self,
        outputs: dict[str, Array] | None = None,
        error: InferdError | None = None,
        final: bool = False,
    ) -> bool:
        final = final or error is not None
        # `tuple.__new__` straight: a named tuple's own `__new__` is a Python function,
        # whose call costs more than the tuple.
        item = tuple.__new__(StreamItem, (outputs, error, final))
        with self._lock:  # one order for sends from several threads
            # The thread is asked only when the send might block: the usual send does not.
            if (
                not final
                and self._unread >= MAX_UNREAD
                and threading.get_ident() != self._loop_thread
            ):
                while self._unread >= MAX_UNREAD and not (self._closed or self._cancelled):
                    if self._holds:  # else the reader that makes room never wakes
                        self._holds = 0
                        self._schedule_wake()
                    # A timeout, so that a send outliving the server's loop ends.
                    if not self._room.wait(1.0) and self._loop.is_closed():
                        return False
            if self._closed or self._cancelled:
                return False
            self._closed = final
            self._unread += 1
            self._items.append(item)
            if not self._holds and not self._schedule_wake():
                return False
        return True

    def _schedule_wake(self) -> bool:
        """Wake the reader on the loop (once for sends that come before it runs); False when
        the server's loop is closed: it stopped, nobody listens."""
        if self._waking:
            return True
        self._waking = True  # before: the loop may run `_wake` before this line would
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:
            self._waking = False
            return False
        return True

    def _wake(self) -> None:
        self._waking = False  # first: a send after this schedules a wake of its own
        self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        direct = self._direct
        if direct is not None:  # it takes what it can; `get` waits on if it took them all
            items = self._items
            while items and direct(items[0]):
                self._take()
            if not items:
                return
        waiter.set_result(None)

    def read_directly(self, reader: Callable[[StreamItem], bool] | None) -> None:
        """While `get` waits, offer each response to `reader` first (on the event loop, in
        order): one it takes (returns True) is read then and there; the first it declines,
        and every one after it, wake `get`. None: no longer."""
        self._direct = reader

    def hold(self) -> None:
        """Queue sends without waking the reader, until every hold is released (on the event
        loop)."""
        with self._lock:
            self._holds += 1

    def release(self) -> None:
        """Wake the reader for what was sent so far (on the event loop); later sends wake it
        once no other hold is left."""
        with self._lock:
            self._holds = max(0, self._holds - 1)
            pending = bool(self._items)
        if pending:  # outside the lock: a direct reader takes it
            self._wake_reader()

    async def get(self) -> StreamItem:
        """The next response, in the order they were sent."""
        while not self._items:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._take()

    def _take(self) -> StreamItem:
        """The first response, read: room for a send that waits for it."""
        with self._lock:
            self._unread -= 1
            room = self._unread == MAX_UNREAD - 1  # room again: wake a blocked send
            if room:
                self._room.notify_all()
        item = self._items.popleft()
        if room:
            for callback in self._on_room:
                callback()
        return item

    def on_room(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the event loop) when the reader catches up from `behind`."""
        self._on_room.append(callback)

    def execution_done(self, execution: asyncio.Future[Any]) -> None:
        """The request's execution ended: a failure ends the stream, unless it ended already.
        A success leaves it open: the model may still send from threads of its own."""
        if execution.cancelled():
            return
        error = execution.exception()
        if error is not None:
            failure = error if isinstance(error, InferdError) else Internal(str(error))
            self.send(error=failure)

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the event loop, once) when the reader leaves the stream
        (`cancel`): the request was cancelled (`cancelled`), or its stream had ended; or when
        the server ends it (`end`)."""
        self._end_callbacks.append(callback)

    def end(self, error: InferdError) -> None:
        """The server ends the stream before the model did (its model is being unloaded):
        `error` is the reader's last response, and the request is cancelled for the model as
        for a client that went away, so that a model that works on it until `cancelled` (on
        its own threads, or in a step the unload waits for) stops. The `on_end` listeners
        learn at once, not when the reader leaves: a worker process must hear of it before it
        is stopped. A stream that had ended is left as it was."""
        if not self.send(error=error):
            return
        with self._lock:
            self._cancelled = True
            self._room.notify_all()  # a blocked send returns, dropped
        self.cancel()

    def cancel(self) -> None:
        """The reader leaves the stream: unless it had ended, its client is gone, so mark the
        request and drop what it would still send. Either way tell the `on_end` listeners."""
        with self._lock:
            callbacks, self._end_callbacks = self._end_callbacks, []
            if not (self._cancelled or self._closed):
                self._cancelled = True
                self._room.notify_all()  # a blocked send returns, dropped
        for callback in callbacks:
            callback()
