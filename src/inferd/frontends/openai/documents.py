"""The `/v1` response objects and stream chunks, as OpenAI shapes them."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from inferd.core.types import Array


class Answer:
    """The objects of one completion (`chat` False) or chat completion, sharing an id."""

    def __init__(self, model: str, chat: bool) -> None:
        self.model = model
        self.chat = chat
        prefix = "chatcmpl" if chat else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def whole(self, text: str, finish_reason: str, usage: dict[str, int] | None) -> dict[str, Any]:
        if self.chat:
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "logprobs": None}
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
        choice["finish_reason"] = finish_reason
        return self._object("chat.completion" if self.chat else "text_completion", [choice], usage)

    def first_chunk(self) -> dict[str, Any] | None:
        """Chat streams open with the assistant's role; completions have no such chunk."""
        if not self.chat:
            return None
        return self.chunk({"role": "assistant", "content": ""}, None)

    def piece(self, text: str) -> dict[str, Any]:
        return self.chunk({"content": text} if self.chat else text, None)

    def last_chunk(self, finish_reason: str) -> dict[str, Any]:
        return self.chunk({} if self.chat else "", finish_reason)

    def usage_chunk(self, usage: dict[str, int] | None) -> dict[str, Any]:
        """`stream_options.include_usage`: a last chunk with no choices and the usage."""
        return self._chunk_object([], usage)

    def chunk(self, content: dict[str, str] | str, finish_reason: str | None) -> dict[str, Any]:
        key = "delta" if self.chat else "text"
        choice = {"index": 0, key: content, "logprobs": None, "finish_reason": finish_reason}
        return self._chunk_object([choice], None)

    def _chunk_object(self, choices: list[Any], usage: dict[str, int] | None) -> dict[str, Any]:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return self._object(kind, choices, usage)

    def _object(
        self, kind: str, choices: list[Any], usage: dict[str, int] | None
    ) -> dict[str, Any]:
        document = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            document["usage"] = usage
        return document


def embedding_list(
    model: str, vectors: list[Array], base64_encoded: bool, prompt_tokens: int | None
) -> dict[str, Any]:
    """`/v1/embeddings`: each vector as floats, or as base64 of its little-endian float32s."""
    data = [
        {"object": "embedding", "index": index, "embedding": _encoded(vector, base64_encoded)}
        for index, vector in enumerate(vectors)
    ]
    document: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if prompt_tokens is not None:
        document["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return document


def _encoded(vector: Array, base64_encoded: bool) -> Any:
    floats = vector.reshape(-1).astype("<f4")
    if base64_encoded:
        return base64.b64encode(floats.tobytes()).decode()
    return floats  # written as a list of numbers by orjson's OPT_SERIALIZE_NUMPY


def model_list(names: list[str]) -> dict[str, Any]:
    models = [{"id": n, "object": "model", "created": 0, "owned_by": "inferd"} for n in names]
    return {"object": "list", "data": models}
