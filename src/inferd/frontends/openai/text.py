"""A generation's responses as pieces of text: each response's text output is the next piece
(a model that is not decoupled gives all of it at once). Text is cut before the first stop
string, holding back only what may still become one; the usage counts are the last the model
reported."""

from __future__ import annotations

import codecs
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from inferd.core.errors import InvalidArgument
from inferd.core.types import Array, InferResponse
from inferd.frontends.openai.mapping import OpenAIMapping


@dataclass(slots=True)
class Outcome:
    """What the generation ended with, filled in as the pieces are read."""

    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def usage(self) -> dict[str, int] | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        total = self.prompt_tokens + self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": total,
        }


async def text_pieces(
    responses: AsyncIterator[InferResponse],
    mapping: OpenAIMapping,
    stops: list[str],
    max_tokens: int | None,
    outcome: Outcome,
) -> AsyncGenerator[str, None]:
    """The non-empty pieces of text; stops reading at a stop string (the caller closes the
    responses, which cancels the rest of the work)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    held = ""
    async for response in responses:
        _count_usage(response, mapping, outcome)
        array = response.outputs.get(mapping.output)
        if array is not None:
            held += decoder.decode(b"".join(_bytes(v) for v in array.reshape(-1)))
        held += decoder.decode(b"", final=response.final)
        cut = _first_stop(held, stops)
        if cut is not None:
            if cut:
                yield held[:cut]
            return
        ready = len(held) - _partial_stop(held, stops)
        if ready:
            yield held[:ready]
            held = held[ready:]
    if held:
        yield held
    if max_tokens is not None and outcome.completion_tokens == max_tokens:
        outcome.finish_reason = "length"


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise InvalidArgument(f"the model's text output holds {type(value).__name__}, not text")


def _count_usage(response: InferResponse, mapping: OpenAIMapping, outcome: Outcome) -> None:
    prompt = _count(response.outputs, mapping.prompt_tokens_output)
    if prompt is not None:
        outcome.prompt_tokens = prompt
    completion = _count(response.outputs, mapping.completion_tokens_output)
    if completion is not None:
        outcome.completion_tokens = completion


def _count(outputs: dict[str, Array], name: str | None) -> int | None:
    array = outputs.get(name) if name else None
    if array is None or array.size != 1 or array.dtype.kind not in "iu":
        return None
    return int(array.reshape(-1)[0])


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _partial_stop(text: str, stops: list[str]) -> int:
    """The length of the longest end of `text` that begins some stop string."""
    return max(
        (
            n
            for s in stops
            for n in range(min(len(s) - 1, len(text)), 0, -1)
            if text.endswith(s[:n])
        ),
        default=0,
    )
