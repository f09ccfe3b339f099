"""The `/v1` request bodies, checked field by field, as typed requests.

Fields inferd does not use (`user`, `frequency_penalty`, ...) are ignored, as most servers do;
fields asking for what it cannot give (`n` > 1, tools, logprobs, ...) are refused with a 400
naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from inferd.core.errors import InvalidArgument
from inferd.frontends.openai.mapping import OpenAIMapping

MAX_STOPS = 4
MAX_EMBEDDING_INPUTS = 2048
_ROLES = ("system", "developer", "user", "assistant")


class BadField(InvalidArgument):
    """A request field with a wrong value; `param` names it, as OpenAI's errors do."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(slots=True)
class Generation:
    """A completion or chat completion request, its prompt already text."""

    model: str
    prompt: str
    stream: bool
    include_usage: bool
    stop: list[str]
    sampling: dict[str, Any] = field(default_factory=dict)  # max_tokens, temperature, ... set


@dataclass(slots=True)
class Embeddings:
    model: str
    texts: list[str]
    base64: bool


def model_of(document: Any) -> str:
    """The body as a JSON object, and its `model`."""
    if not isinstance(document, dict):
        raise InvalidArgument("the request body must be a JSON object")
    model = document.get("model")
    if not isinstance(model, str) or not model:
        raise BadField("model", "'model' must be a non-empty string")
    return model


def completion_request(document: dict[str, Any], mapping: OpenAIMapping) -> Generation:
    _refuse_unsupported(document, ("echo", "suffix"), ("best_of",))
    if document.get("logprobs") is not None:
        raise BadField("logprobs", "logprobs are not supported")
    prompt = document.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadField("prompt", "'prompt' must be a string (one prompt per request)")
    return _generation(document, mapping, prompt, "max_tokens")


def chat_request(document: dict[str, Any], mapping: OpenAIMapping) -> Generation:
    _refuse_unsupported(document, ("logprobs",), ())
    for name in ("tools", "tool_choice", "functions", "function_call", "top_logprobs", "audio"):
        if document.get(name) is not None:
            raise BadField(name, f"'{name}' is not supported")
    messages = _messages(document.get("messages"))
    if mapping.chat_template == "json":
        prompt = orjson.dumps(messages).decode()
    else:
        prompt = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
    return _generation(document, mapping, prompt, "max_completion_tokens")


def embeddings_request(document: dict[str, Any]) -> Embeddings:
    text = document.get("input")
    texts = [text] if isinstance(text, str) else text
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadField("input", "'input' must be a string or a non-empty list of strings")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise BadField("input", f"at most {MAX_EMBEDDING_INPUTS} inputs per request")
    encoding = document.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadField("encoding_format", "'encoding_format' must be 'float' or 'base64'")
    if document.get("dimensions") is not None:
        raise BadField("dimensions", "'dimensions' is not supported")
    return Embeddings(model_of(document), texts, encoding == "base64")


def _generation(
    document: dict[str, Any], mapping: OpenAIMapping, prompt: str, tokens_alias: str
) -> Generation:
    n = document.get("n")
    if n is not None and n != 1:
        raise BadField("n", "only n=1 is supported")
    stream = _flag(document, "stream")
    options = document.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not stream):
        raise BadField("stream_options", "'stream_options' is an object, and only with stream")
    include_usage = bool((options or {}).get("include_usage", False))
    sampling: dict[str, Any] = {}
    max_tokens = document.get("max_tokens", document.get(tokens_alias))
    if max_tokens is not None:
        sampling["max_tokens"] = _max_tokens(max_tokens, mapping.max_tokens_limit)
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = document.get(name)
        if value is not None:
            sampling[name] = _number(name, value, low, high)
    seed = document.get("seed")
    if seed is not None:
        if not _is_int(seed):
            raise BadField("seed", "'seed' must be an integer")
        sampling["seed"] = seed
    stop = _stop(document.get("stop"))
    if stop:
        sampling["stop"] = stop
    return Generation(model_of(document), prompt, stream, include_usage, stop, sampling)


def _refuse_unsupported(
    document: dict[str, Any], flags: tuple[str, ...], counts: tuple[str, ...]
) -> None:
    for name in flags:
        if document.get(name) not in (None, False, ""):
            raise BadField(name, f"'{name}' is not supported")
    for name in counts:
        if document.get(name) not in (None, 1):
            raise BadField(name, f"only {name}=1 is supported")


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadField("messages", "'messages' must be a non-empty list")
    messages = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise BadField(where, f"{where} must be an object with a role in {list(_ROLES)}")
        messages.append(
            {"role": message["role"], "content": _content(message.get("content"), where)}
        )
    return messages


def _content(content: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise BadField(where, f"{where}.content must be a string or a list of text parts")


def _flag(document: dict[str, Any], name: str) -> bool:
    value = document.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadField(name, f"'{name}' must be a boolean")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _max_tokens(value: Any, limit: int) -> int:
    if not _is_int(value) or value < 1:
        raise BadField("max_tokens", "'max_tokens' must be a positive integer")
    if value > limit:
        raise BadField("max_tokens", f"'max_tokens' is {value}; this model allows at most {limit}")
    return int(value)


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadField(name, f"'{name}' must be a number from {low} to {high}")
    return float(value)


def _stop(value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else value if value is not None else []
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOPS
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise BadField("stop", f"'stop' must be a string or a list of up to {MAX_STOPS} strings")
    return stops
