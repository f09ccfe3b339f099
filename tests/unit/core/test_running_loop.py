"""`running_loop` and `running_task` answer as asyncio's own do, with the loop kept per thread."""

from __future__ import annotations

import asyncio
import os
import threading
import warnings

import pytest
import uvloop

from inferd.core.running_loop import running_loop, running_task


async def _loop_and_task() -> tuple[asyncio.AbstractEventLoop, asyncio.Task[object] | None]:
    return running_loop(), running_task()


def test_they_are_the_running_loop_and_task() -> None:
    async def check() -> None:
        assert running_loop() is asyncio.get_running_loop()
        assert running_task() is asyncio.current_task()
        inner = await asyncio.create_task(_loop_and_task())
        assert inner[0] is asyncio.get_running_loop()
        assert inner[1] is not asyncio.current_task()

    asyncio.run(check())


def test_each_new_loop_of_a_thread_is_found_not_the_one_before() -> None:
    first = asyncio.new_event_loop()
    try:
        found_first, _ = first.run_until_complete(_loop_and_task())
    finally:
        first.close()
    found_second, _ = uvloop.run(_loop_and_task())
    assert found_first is first
    assert found_second is not first
    assert isinstance(found_second, uvloop.Loop)


def test_outside_a_loop_it_raises_as_asyncio_does() -> None:
    asyncio.run(_loop_and_task())  # a loop kept from before, stopped since
    with pytest.raises(RuntimeError, match="no running event loop"):
        running_loop()


def test_threads_find_their_own_loops() -> None:
    found: dict[str, asyncio.AbstractEventLoop] = {}
    started = threading.Barrier(2)

    async def note(name: str) -> None:
        started.wait()  # both loops run at once
        found[name] = running_loop()
        assert found[name] is asyncio.get_running_loop()

    threads = [threading.Thread(target=asyncio.run, args=(note(n),)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found["a"] is not found["b"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_find_its_parents_loop() -> None:
    async def fork() -> int:
        running_loop()  # kept in the parent
        with warnings.catch_warnings():  # Python 3.12 warns of fork with threads running
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: no loop runs here, though the parent's looks as it did
            try:
                running_loop()
            except RuntimeError:
                os._exit(0)
            os._exit(1)
        return os.waitpid(pid, 0)[1]

    status = asyncio.run(fork())
    assert os.waitstatus_to_exitcode(status) == 0
