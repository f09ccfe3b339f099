"""The parts of a `ModelStreamInfer` call: the encoder of a request's responses (whose
headers it serialises once and reuses) gives the bytes the full encoding gives, and the
outbox bounds what waits for grpc while its end always gets through."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from inferd.core.types import Array, InferResponse
from inferd.frontends.grpc.codec import encode_infer_response
from inferd.frontends.grpc.outbox import Outbox
from inferd.frontends.grpc.stream_encoder import MAX_HEADERS, StreamEncoder
from inferd.frontends.grpc.wire import serialize_stream_response
from inferd.frontends.shared_memory import DISABLED


def _response(outputs: dict[str, Array], final: bool = False, **parameters: Any) -> InferResponse:
    response = InferResponse("lm", "1", outputs, "request-7", final=final)
    response.parameters.update(parameters, triton_final_response=final)
    return response


def _full(response: InferResponse) -> bytes:
    encoded = encode_infer_response(response, service_pb2.ModelInferResponse())
    return serialize_stream_response(encoded)


def _token(value: int) -> dict[str, Array]:
    return {"TOKEN": np.array([value], np.int32)}


def test_every_response_is_encoded_as_in_full() -> None:
    encoder = StreamEncoder(None, DISABLED)
    responses = [_response(_token(n)) for n in range(3)]
    responses += [_response({"TEXT": np.array([b"ab" * n], np.object_)}) for n in range(3)]
    responses += [_response(_token(9), index=2), _response(_token(9), tag=[1, 2])]
    responses += [_response({"LOGITS": np.ones((1, n), np.float32)}) for n in range(1, 12)]
    both = [_token(n) | {"LOGITS": np.full((1, 4), n, np.float32)} for n in range(3)]
    responses += [_response(outputs) for outputs in both]
    responses += [_response(_token(3), final=True), _response({}, final=True)]
    for response in responses:
        assert serialize_stream_response(encoder.encode(response)) == _full(response)


def test_distinct_headers_kept_are_bounded() -> None:
    encoder = StreamEncoder(None, DISABLED)
    for width in range(1, 4 * MAX_HEADERS):
        encoder.encode(_response({"LOGITS": np.ones((1, width), np.float32)}))
        assert len(encoder._headers) <= MAX_HEADERS


def test_the_outbox_holds_at_most_its_limit_and_its_end_gets_through() -> None:
    async def scenario() -> None:
        outbox = Outbox(2)
        await outbox.put(1)
        await outbox.put(2)
        third = asyncio.ensure_future(outbox.put(3))
        await asyncio.sleep(0.01)
        assert not third.done()  # waits for room
        outbox.close()  # never waits, even on a full outbox
        assert await outbox.get() == 1
        await third
        assert [await outbox.get() for _ in range(3)] == [2, 3, None]

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_an_offer_is_put_only_with_room_and_no_put_waiting() -> None:
    async def scenario() -> None:
        outbox = Outbox(2)
        assert outbox.offer(1)
        assert outbox.offer(2)
        assert not outbox.offer(3)  # full
        third = asyncio.ensure_future(outbox.put(3))
        await asyncio.sleep(0.01)
        assert await outbox.get() == 1  # room, given to the put that waits for it
        assert not outbox.offer(4)
        await third
        assert [await outbox.get() for _ in range(2)] == [2, 3]
        assert outbox.offer(5)
        assert await outbox.get() == 5

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_cancelled_put_passes_its_room_on() -> None:
    async def scenario() -> None:
        outbox = Outbox(1)
        await outbox.put("first")
        waiting = [asyncio.ensure_future(outbox.put(n)) for n in ("second", "third")]
        await asyncio.sleep(0.01)
        assert await outbox.get() == "first"  # wakes "second"...
        waiting[0].cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiting[0]
        await waiting[1]
        assert await outbox.get() == "third"

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_full_outbox_calls_on_room_once_it_has_room_again() -> None:
    async def scenario() -> list[int]:
        calls: list[int] = []
        outbox = Outbox(2, on_room=lambda: calls.append(len(calls)))
        await outbox.put("a")
        assert not outbox.full
        await outbox.put("b")
        assert outbox.full
        await outbox.get()
        assert not outbox.full
        await outbox.get()  # it was not full: no further call
        return calls

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [0]


def test_a_token_response_is_encoded_to_its_final_bytes() -> None:
    encoder = StreamEncoder(None, DISABLED)
    encoder.encode(_response(_token(1)))  # the first one builds the header
    encoded = encoder.encode(_response(_token(2)))
    assert isinstance(encoded, bytes)
    assert encoded == _full(_response(_token(2)))


def test_a_token_reuses_the_last_header_only_while_nothing_in_it_changed() -> None:
    encoder = StreamEncoder(None, DISABLED)
    encoder.encode(_response(_token(1)))
    encoder.encode(_response(_token(2)))
    encoder._headers.clear()  # the next token's bytes come from the last header alone
    assert encoder.encode(_response(_token(3))) == _full(_response(_token(3)))
    variants = [
        _response(_token(5), index=1),  # a parameter's value
        _response(_token(5), index=1, tag="x"),  # a parameter more
        _response({"WORD": np.array([5], np.int32)}),  # the output's name
        _response({"TOKEN": np.array([5], np.int64)}),  # its datatype
        _response({"TOKEN": np.array([5, 6], np.int32)}),  # its shape
    ]
    for variant in variants:
        for response in [_response(_token(1)), _response(_token(2)), variant, variant]:
            assert serialize_stream_response(encoder.encode(response)) == _full(response)
