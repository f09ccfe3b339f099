"""The generate_stream answer, the disconnect watch and the server's shutdown cutting a stream,
driven through the ASGI callables."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.types import InferResponse
from inferd.frontends.http.asgi import Message, until_disconnect
from inferd.frontends.http.sse import send_event_stream


def response(value: int) -> InferResponse:
    return InferResponse("m", "1", {"y": np.array([value], dtype=np.int32)})


async def responses(count: int, error: Exception | None = None) -> AsyncIterator[InferResponse]:
    for value in range(count):
        yield response(value)
    if error is not None:
        raise error


def stream(source: AsyncIterator[InferResponse]) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(send_event_stream(send, source))
    return sent


def events(sent: list[Message]) -> list[Any]:
    body = b"".join(m["body"] for m in sent if m["type"] == "http.response.body")
    chunks = body.decode().split("\n\n")
    assert chunks[-1] == ""
    return [json.loads(chunk.removeprefix("data: ")) for chunk in chunks[:-1]]


def test_each_response_is_one_event_and_the_body_ends() -> None:
    sent = stream(responses(3))
    assert sent[0]["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    assert [event["y"] for event in events(sent)] == [0, 1, 2]
    assert sent[-1] == {"type": "http.response.body", "body": b""}


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (Unavailable("the model stopped"), "the model stopped"),
        (RuntimeError("a bug"), "internal error: RuntimeError('a bug')"),
    ],
)
def test_an_error_after_the_first_response_is_the_last_event(
    error: Exception, message: str
) -> None:
    sent = stream(responses(2, error))
    assert sent[0]["status"] == 200
    assert events(sent)[2:] == [{"error": message}]
    assert sent[-1] == {"type": "http.response.body", "body": b""}


def test_an_error_before_the_first_response_is_raised_for_the_caller_to_answer() -> None:
    with pytest.raises(InvalidArgument, match="bad input"):
        stream(responses(0, InvalidArgument("bad input")))


def test_a_final_flag_sent_alone_is_no_event() -> None:
    async def source() -> AsyncIterator[InferResponse]:
        yield response(1)
        yield InferResponse("m", "1", {}, final=True)  # a decoupled model's close()

    assert [event["y"] for event in events(stream(source()))] == [1]


def test_no_response_is_an_empty_stream() -> None:
    sent = stream(responses(0))
    assert sent[0]["status"] == 200 and events(sent) == []


def test_a_disconnect_cancels_the_answer() -> None:
    async def scenario() -> bool:
        disconnected = asyncio.Event()
        cancelled = asyncio.Event()

        async def receive() -> Message:
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def answer() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        watch = asyncio.create_task(until_disconnect(receive, answer()))
        await asyncio.sleep(0)
        disconnected.set()
        await asyncio.wait_for(watch, 10)
        return cancelled.is_set()

    assert asyncio.run(scenario())


def test_the_answer_s_error_propagates_and_the_watch_ends() -> None:
    async def scenario() -> None:
        async def receive() -> Message:
            await asyncio.sleep(60)
            return {"type": "http.disconnect"}

        async def answer() -> None:
            raise InvalidArgument("refused")

        await asyncio.wait_for(until_disconnect(receive, answer()), 10)

    with pytest.raises(InvalidArgument, match="refused"):
        asyncio.run(scenario())


async def stalled(count: int, waiting: asyncio.Event) -> AsyncIterator[InferResponse]:
    """`count` responses, then none ever again (a model still generating): `waiting` is set
    once they are all sent."""
    for value in range(count):
        yield response(value)
    waiting.set()
    await asyncio.Event().wait()
    yield response(count)


async def never() -> Message:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


def cut_stream(count: int, cut: str) -> tuple[list[Message], BaseException | None]:
    """What a generate_stream stalled after `count` responses sends, and what its handler
    raises, when it is then cut: by the server's shutdown (its handler task cancelled, as
    uvicorn does at the end of the grace) or by its client leaving."""

    async def scenario() -> tuple[list[Message], BaseException | None]:
        sent: list[Message] = []
        waiting = asyncio.Event()
        gone = asyncio.Event()

        async def send(message: Message) -> None:
            sent.append(message)

        async def receive() -> Message:
            await gone.wait()
            return {"type": "http.disconnect"}

        answer = send_event_stream(send, stalled(count, waiting))
        handler = asyncio.create_task(until_disconnect(receive, answer))
        await waiting.wait()
        if cut == "shutdown":
            handler.cancel()
        else:
            gone.set()
        await asyncio.wait((handler,))
        if handler.cancelled():
            return sent, None
        assert handler.cancelling() == 0  # a cancellation it ended is no longer pending
        return sent, handler.exception()

    return asyncio.run(scenario())


def test_a_stream_cut_by_the_shutdown_ends_with_an_error_event() -> None:
    sent, raised = cut_stream(2, "shutdown")
    assert raised is None  # uvicorn logs no failure, and its response is complete
    assert events(sent)[2:] == [{"error": "the server is shutting down"}]
    assert sent[-1] == {"type": "http.response.body", "body": b""}


def test_a_stream_cut_by_the_shutdown_before_its_first_event_is_unavailable() -> None:
    sent, raised = cut_stream(0, "shutdown")
    assert sent == []
    assert isinstance(raised, Unavailable)  # the frontend answers it 503
    assert raised.message == "the server is shutting down"


def test_a_stream_its_client_left_writes_nothing_more() -> None:
    sent, raised = cut_stream(2, "disconnect")
    assert raised is None
    assert len(sent) == 3  # the status and two events: no error event, no end of body


def test_the_shutdown_goes_on_through_an_answer_that_does_not_end_itself() -> None:
    async def scenario() -> bool:
        started = asyncio.Event()

        async def answer() -> None:
            started.set()
            await asyncio.Event().wait()

        handler = asyncio.create_task(until_disconnect(never, answer()))
        await started.wait()
        handler.cancel()
        await asyncio.wait((handler,))
        return handler.cancelled()

    assert asyncio.run(scenario())  # uvicorn answers it as it did before
