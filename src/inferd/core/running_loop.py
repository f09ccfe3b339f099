"""The running event loop and task, without a system call per look-up.

CPython 3.11's `asyncio.get_running_loop()` (and `asyncio.current_task()`, which calls it)
makes a `getpid()` system call each time, to tell a forked child from its parent. In a tight
loop that is 0.1 us, but on a core busy serving each costs 0.5-1 us of it (the kernel's entry
and exit cost the request path what it had in its caches): taking the two of the batched HTTP
path away saved 1-2 us per request in `benchmarks/request_express.py` (docs/benchmarks.md).

So each thread keeps the loop it last found running: a loop runs on one thread, and while it
runs, all of that thread's code runs inside it. A loop that stopped is asked for again (a
thread may run another after it), and a forked child forgets its parent's.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

_kept = threading.local()


def running_loop() -> asyncio.AbstractEventLoop:
    """`asyncio.get_running_loop()`: the calling thread's running loop, or RuntimeError."""
    loop: asyncio.AbstractEventLoop | None = getattr(_kept, "loop", None)
    if loop is None or not loop.is_running():
        loop = _kept.loop = asyncio.get_running_loop()
    return loop


def running_task() -> asyncio.Task[Any]:
    """The task running on the calling thread's loop (a coroutine's caller always has one)."""
    task = asyncio.current_task(running_loop())
    assert task is not None
    return task


def _forget() -> None:
    _kept.loop = None


os.register_at_fork(after_in_child=_forget)
