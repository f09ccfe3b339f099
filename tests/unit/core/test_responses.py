"""The per-request response channel: order across threads, the final flag, errors, cancel,
the server's ending of a stream, and the bound on responses waiting for the reader."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from inferd.core.errors import InvalidArgument, ModelExecutionError, Unavailable
from inferd.core.responses import MAX_UNREAD, ResponseChannel, StreamItem


async def drain(channel: ResponseChannel) -> list[StreamItem]:
    items = []
    while True:
        item = await channel.get()
        items.append(item)
        if item.final:
            return items


def test_sends_from_another_thread_arrive_in_order_and_end_at_the_final_flag() -> None:
    async def scenario() -> list[StreamItem]:
        channel = ResponseChannel()

        def model() -> None:
            for value in range(5):
                assert channel.send({"OUT": np.array([value])})
            assert channel.send(final=True)
            assert not channel.send({"OUT": np.array([9])})  # after the final flag: dropped

        thread = threading.Thread(target=model)
        thread.start()
        items = await drain(channel)
        thread.join()
        return items

    items = asyncio.run(scenario())
    assert [int(i.outputs["OUT"][0]) for i in items if i.outputs] == [0, 1, 2, 3, 4]
    assert items[-1] == StreamItem(None, None, True)


def test_an_error_ends_the_stream() -> None:
    async def scenario() -> list[StreamItem]:
        channel = ResponseChannel()
        channel.send({"OUT": np.array([1])})
        channel.send(error=InvalidArgument("bad"))
        assert not channel.send(final=True)
        return await drain(channel)

    items = asyncio.run(scenario())
    assert len(items) == 2
    assert isinstance(items[1].error, InvalidArgument) and items[1].final


def test_a_failed_execution_ends_a_stream_still_open() -> None:
    async def scenario() -> list[StreamItem]:
        channel = ResponseChannel()
        execution: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        execution.add_done_callback(channel.execution_done)
        execution.set_exception(ModelExecutionError("it raised"))
        return await drain(channel)

    (item,) = asyncio.run(scenario())
    assert isinstance(item.error, ModelExecutionError)


def test_cancel_marks_the_channel_tells_its_listeners_and_drops_later_sends() -> None:
    async def scenario() -> tuple[bool, list[str], bool]:
        channel = ResponseChannel()
        told: list[str] = []
        channel.on_end(lambda: told.append("ended"))
        channel.cancel()
        channel.cancel()  # once is enough
        return channel.cancelled, told, channel.send({"OUT": np.array([1])})

    assert asyncio.run(scenario()) == (True, ["ended"], False)


def test_leaving_an_ended_stream_tells_its_listeners_without_cancelling_it() -> None:
    # The server failed the request (as an iterative one that idled out): its reader read the
    # error and leaves; what the request holds elsewhere is freed then, not later.
    async def scenario() -> tuple[bool, list[str]]:
        channel = ResponseChannel()
        told: list[str] = []
        channel.on_end(lambda: told.append("ended"))
        channel.send(error=Unavailable("idled out"))
        await channel.get()
        channel.cancel()
        channel.cancel()
        return channel.cancelled, told

    assert asyncio.run(scenario()) == (False, ["ended"])


def test_the_server_ending_a_stream_hands_its_reader_the_error_and_cancels_the_request() -> None:
    # A model being unloaded: the model must see the request cancelled, and a worker process
    # be told (the listeners) before it is stopped, not once the reader reads the error.
    async def scenario() -> tuple[list[str], bool, bool, list[StreamItem]]:
        channel = ResponseChannel()
        told: list[str] = []
        channel.on_end(lambda: told.append("ended"))
        channel.send({"OUT": np.array([1])})
        channel.end(Unavailable("unloaded"))
        at_once = list(told)
        dropped = not channel.send({"OUT": np.array([2])})
        items = await drain(channel)
        channel.cancel()  # the reader leaves: nobody is told twice
        assert told == ["ended"]
        return at_once, channel.cancelled, dropped, items

    at_once, cancelled, dropped, items = asyncio.run(scenario())
    assert (at_once, cancelled, dropped) == (["ended"], True, True)
    assert [item.outputs is not None for item in items] == [True, False]
    assert isinstance(items[1].error, Unavailable) and items[1].final


def test_the_server_ending_a_stream_that_had_ended_leaves_it_as_it_was() -> None:
    async def scenario() -> tuple[list[str], bool, list[StreamItem]]:
        channel = ResponseChannel()
        told: list[str] = []
        channel.on_end(lambda: told.append("ended"))
        channel.send(final=True)  # the model's answer was complete
        channel.end(Unavailable("unloaded"))
        return list(told), channel.cancelled, await drain(channel)

    assert asyncio.run(scenario()) == ([], False, [StreamItem(None, None, True)])


def test_a_send_after_the_server_loop_closed_is_dropped() -> None:
    async def make() -> ResponseChannel:
        return ResponseChannel()

    channel = asyncio.run(make())  # asyncio.run closes the loop it made
    assert not channel.send({"OUT": np.array([1])})


def test_a_thread_s_sends_wait_for_a_slow_reader_and_a_cancel_releases_them() -> None:
    async def scenario() -> tuple[list[int], list[bool], list[int]]:
        channel = ResponseChannel()
        sent: list[bool] = []
        room: list[int] = []
        channel.on_room(lambda: room.append(len(sent)))

        def model() -> None:
            for value in range(MAX_UNREAD + 3):
                sent.append(channel.send({"OUT": np.array([value])}))

        thread = threading.Thread(target=model)
        thread.start()
        while len(sent) < MAX_UNREAD:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert len(sent) == MAX_UNREAD and channel.behind  # the next send waits
        first = await channel.get()  # room for one more
        while len(sent) < MAX_UNREAD + 1:
            await asyncio.sleep(0.01)
        channel.cancel()  # the send still waiting returns, dropped
        thread.join(10)
        assert not thread.is_alive()
        assert first.outputs is not None
        return [int(first.outputs["OUT"][0])], sent, room

    first, sent, room = asyncio.run(scenario())
    assert first == [0]
    assert sent == [True] * (MAX_UNREAD + 1) + [False, False]
    assert room == [MAX_UNREAD]  # told once, when the reader caught up


def test_sends_on_the_loop_and_the_final_flag_never_wait() -> None:
    async def scenario() -> list[StreamItem]:
        channel = ResponseChannel()
        for value in range(MAX_UNREAD + 5):  # on the loop's own thread: it could not read
            assert channel.send({"OUT": np.array([value])})
        final = threading.Thread(target=lambda: channel.send(final=True))
        final.start()
        final.join(10)
        assert not final.is_alive()
        return await drain(channel)

    assert len(asyncio.run(scenario())) == MAX_UNREAD + 6


def test_a_held_channel_wakes_its_reader_on_release_with_every_send_in_order() -> None:
    async def scenario() -> tuple[bool, list[StreamItem]]:
        channel = ResponseChannel()
        channel.hold()
        reader = asyncio.ensure_future(drain(channel))
        await asyncio.sleep(0)  # the reader waits

        def model() -> None:
            for value in range(3):
                assert channel.send({"OUT": np.array([value])})
            assert channel.send(final=True)

        thread = threading.Thread(target=model)
        thread.start()
        thread.join()
        await asyncio.sleep(0.05)
        woken_while_held = reader.done()
        channel.release()
        return woken_while_held, await asyncio.wait_for(reader, 10)

    woken_while_held, items = asyncio.run(scenario())
    assert not woken_while_held
    assert [int(i.outputs["OUT"][0]) for i in items if i.outputs] == [0, 1, 2]
    assert items[-1].final


def test_a_release_hands_over_what_was_sent_but_keeps_a_later_hold() -> None:
    # The iterative scheduler holds a channel for the next step before it releases the step
    # before: that release delivers the earlier step's responses, not the new step's.
    async def scenario() -> tuple[list[int], bool, list[int]]:
        channel = ResponseChannel()
        channel.hold()

        def send(value: int) -> None:
            thread = threading.Thread(target=channel.send, args=({"OUT": np.array([value])},))
            thread.start()
            thread.join()

        send(0)
        channel.hold()  # the next step
        channel.release()  # the step before
        first = [int((await asyncio.wait_for(channel.get(), 10)).outputs["OUT"][0])]
        getter = asyncio.ensure_future(channel.get())
        await asyncio.sleep(0)  # the reader waits
        send(1)  # the next step's, while it is held
        await asyncio.sleep(0.05)
        woken_while_held = getter.done()
        channel.release()
        second = [int((await asyncio.wait_for(getter, 10)).outputs["OUT"][0])]
        return first, woken_while_held, second

    first, woken_while_held, second = asyncio.run(scenario())
    assert first == [0]
    assert not woken_while_held
    assert second == [1]


def test_a_send_that_would_wait_on_a_held_channel_releases_it() -> None:
    # Were the hold kept, the reader would never make room for the send (nor would the
    # step that holds it end).
    async def scenario() -> int:
        channel = ResponseChannel()
        channel.hold()
        reader = asyncio.ensure_future(drain(channel))

        def model() -> None:
            for value in range(MAX_UNREAD * 3):
                assert channel.send({"OUT": np.array([value])})
            assert channel.send(final=True)

        thread = threading.Thread(target=model)
        thread.start()
        items = await asyncio.wait_for(reader, 30)
        thread.join()
        return len(items)

    assert asyncio.run(scenario()) == MAX_UNREAD * 3 + 1


def test_a_direct_reader_takes_responses_in_order_until_it_declines_one() -> None:
    # What it declines, and every response after that, reach `get` in their order.
    async def scenario() -> tuple[list[int], bool, list[int], bool]:
        channel = ResponseChannel()
        taken: list[int] = []

        def direct(item: StreamItem) -> bool:
            if item.final or item.outputs is None or int(item.outputs["OUT"][0]) == 2:
                return False
            taken.append(int(item.outputs["OUT"][0]))
            return True

        channel.read_directly(direct)
        channel.hold()
        reader = asyncio.ensure_future(drain(channel))
        await asyncio.sleep(0)  # the reader waits

        def model() -> None:
            for value in range(MAX_UNREAD):
                assert channel.send({"OUT": np.array([value])})

        thread = threading.Thread(target=model)
        thread.start()
        thread.join()
        channel.release()
        await asyncio.sleep(0.01)
        woken_while_taken = reader.done()
        behind = channel.behind  # what it took is read: no longer waiting for the reader
        assert channel.send(final=True)
        items = await asyncio.wait_for(reader, 10)
        read = [int(i.outputs["OUT"][0]) for i in items if i.outputs]
        return taken, woken_while_taken, read, behind

    taken, woken_while_taken, read, behind = asyncio.run(scenario())
    assert taken == [0, 1]
    assert not woken_while_taken
    assert read == list(range(2, MAX_UNREAD))
    assert not behind


def test_a_direct_reader_leaves_the_reader_waiting_when_it_takes_everything() -> None:
    # What it takes is read: a model's sends beyond MAX_UNREAD do not wait for the reader.
    async def scenario() -> tuple[list[int], bool, bool]:
        channel = ResponseChannel()
        taken: list[int] = []

        def direct(item: StreamItem) -> bool:
            assert item.outputs is not None
            taken.append(int(item.outputs["OUT"][0]))
            return True

        channel.read_directly(direct)
        reader = asyncio.ensure_future(channel.get())
        await asyncio.sleep(0)

        def model() -> None:
            for value in range(MAX_UNREAD * 2):
                assert channel.send({"OUT": np.array([value])})

        thread = threading.Thread(target=model)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        waiting = not reader.done()
        behind = channel.behind
        channel.read_directly(None)  # no longer: `get` gets the next one
        threading.Thread(target=channel.send, args=({"OUT": np.array([-1])},)).start()
        item = await asyncio.wait_for(reader, 10)
        assert item.outputs is not None
        return [*taken, int(item.outputs["OUT"][0])], waiting, behind

    read, waiting, behind = asyncio.run(scenario())
    assert read == [*range(MAX_UNREAD * 2), -1]
    assert waiting
    assert not behind
