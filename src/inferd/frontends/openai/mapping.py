"""How a model is served on `/v1`: its config `parameters` whose keys start with `openai.`.

openai.task                      completions | chat | embeddings, or several, comma-separated
openai.input                     the input that takes the prompt / messages / text (BYTES)
openai.output                    the output carrying the text (BYTES) or embedding (FP32)
openai.chat_template             default | json (chat: render the messages, or pass them
                                 as a JSON array string)
openai.max_tokens | temperature | top_p | stop | seed
                                 the input that takes that request field; without one, the
                                 field travels as a request parameter of the same name
openai.max_tokens_limit          the largest max_tokens accepted (default 4096)
openai.prompt_tokens_output | completion_tokens_output
                                 outputs reporting usage counts (the last value sent counts)
"""

from __future__ import annotations

from dataclasses import dataclass

from inferd.core.errors import InvalidArgument, NotFound
from inferd.core.model_config import ModelConfig, int_parameter, string_parameter

TASKS = ("completions", "chat", "embeddings")
SAMPLING_FIELDS = ("max_tokens", "temperature", "top_p", "stop", "seed")
TEMPLATES = ("default", "json")
DEFAULT_MAX_TOKENS_LIMIT = 4096
_PREFIX = "openai."


@dataclass(frozen=True, slots=True)
class OpenAIMapping:
    tasks: frozenset[str]
    input: str
    output: str
    chat_template: str
    field_inputs: dict[str, str]  # request field -> model input; absent: a request parameter
    max_tokens_limit: int
    prompt_tokens_output: str | None
    completion_tokens_output: str | None


def declares_openai(config: ModelConfig) -> bool:
    return bool(string_parameter(config, _PREFIX + "task"))


def openai_mapping(config: ModelConfig, model: str) -> OpenAIMapping:
    """The mapping `config` declares. A model without `openai.task` is not found on /v1; a
    mapping that names no input or output, or an unknown task, is refused."""
    tasks = frozenset(t.strip() for t in (_text(config, "task") or "").split(",") if t.strip())
    if not tasks:
        raise NotFound(f"model '{model}' is not served on /v1 (its config has no openai.task)")
    unknown = sorted(tasks - set(TASKS))
    if unknown:
        raise InvalidArgument(f"model '{model}': unknown openai.task {unknown}; use {TASKS}")
    template = _text(config, "chat_template") or "default"
    if template not in TEMPLATES:
        raise InvalidArgument(f"model '{model}': openai.chat_template must be one of {TEMPLATES}")
    io = {key: _text(config, key) for key in ("input", "output")}
    missing = [key for key, name in io.items() if not name]
    if missing:
        raise InvalidArgument(f"model '{model}' names no openai.{missing[0]} in its config")
    limit = int_parameter(config, _PREFIX + "max_tokens_limit", minimum=1)
    return OpenAIMapping(
        tasks=tasks,
        input=io["input"] or "",
        output=io["output"] or "",
        chat_template=template,
        field_inputs={f: name for f in SAMPLING_FIELDS if (name := _text(config, f))},
        max_tokens_limit=limit or DEFAULT_MAX_TOKENS_LIMIT,
        prompt_tokens_output=_text(config, "prompt_tokens_output"),
        completion_tokens_output=_text(config, "completion_tokens_output"),
    )


def _text(config: ModelConfig, key: str) -> str | None:
    value = string_parameter(config, _PREFIX + key)
    return value.strip() if value else None
