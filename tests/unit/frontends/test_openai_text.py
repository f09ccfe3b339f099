"""A generation's responses as text pieces: joined bytes, stop strings (also split across
responses), usage counts and the finish reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from inferd.core.errors import InvalidArgument
from inferd.core.model_config import parse_pbtxt
from inferd.core.types import InferResponse
from inferd.frontends.openai.mapping import OpenAIMapping, openai_mapping
from inferd.frontends.openai.text import Outcome, text_pieces

MAPPING = openai_mapping(
    parse_pbtxt(
        """parameters [
          { key: "openai.task", value: { string_value: "completions" } },
          { key: "openai.input", value: { string_value: "PROMPT" } },
          { key: "openai.output", value: { string_value: "TEXT" } },
          { key: "openai.completion_tokens_output", value: { string_value: "DONE" } }
        ]"""
    ),
    "m",
)


async def responses(pieces: list[bytes]) -> AsyncIterator[InferResponse]:
    for count, piece in enumerate(pieces, 1):
        outputs = {
            "TEXT": np.array([piece], dtype=object),
            "DONE": np.array([count], np.int32),
        }
        yield InferResponse("m", "1", outputs, final=count == len(pieces))


def read(
    pieces: list[bytes],
    stops: list[str],
    max_tokens: int | None = None,
    mapping: OpenAIMapping = MAPPING,
) -> tuple[list[str], Outcome]:
    outcome = Outcome()

    async def collect() -> list[str]:
        stream = text_pieces(responses(pieces), mapping, stops, max_tokens, outcome)
        return [piece async for piece in stream]

    return asyncio.run(collect()), outcome


def test_each_response_is_the_next_piece() -> None:
    pieces, outcome = read([b"ab", b"c", b"d"], [], max_tokens=4)
    assert pieces == ["ab", "c", "d"]
    assert (outcome.finish_reason, outcome.completion_tokens, outcome.usage()) == ("stop", 3, None)


def test_max_tokens_reached_is_length() -> None:
    assert read([b"a", b"b"], [], max_tokens=2)[1].finish_reason == "length"


def test_utf8_split_across_responses_is_one_character() -> None:
    data = "é".encode()
    assert read([data[:1], data[1:]], [])[0] == ["é"]


def test_a_stop_string_ends_the_text_even_across_responses() -> None:
    pieces, outcome = read([b"one t", b"w", b"o three"], ["two"])
    assert "".join(pieces) == "one "
    assert outcome.finish_reason == "stop"
    assert pieces[0] == "one "  # " t" is held back only while it may begin "two"


def test_a_held_back_prefix_that_is_no_stop_is_given_out() -> None:
    assert "".join(read([b"one t", b"en"], ["two"])[0]) == "one ten"


def test_the_earliest_of_several_stops_wins() -> None:
    assert "".join(read([b"abcdef"], ["de", "bc"])[0]) == "a"


def test_a_non_text_output_is_refused() -> None:
    async def numbers() -> AsyncIterator[InferResponse]:
        yield InferResponse("m", "1", {"TEXT": np.array([1.5])})

    async def collect() -> None:
        async for _ in text_pieces(numbers(), MAPPING, [], None, Outcome()):
            pass

    with pytest.raises(InvalidArgument, match="not text"):
        asyncio.run(collect())
