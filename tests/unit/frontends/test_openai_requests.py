"""The /v1 request bodies: what is read, what is refused (naming the field)."""

from __future__ import annotations

from typing import Any

import pytest

from inferd.core.errors import InvalidArgument, NotFound
from inferd.core.model_config import parse_pbtxt
from inferd.frontends.openai.mapping import openai_mapping
from inferd.frontends.openai.requests import (
    BadField,
    chat_request,
    completion_request,
    embeddings_request,
)


def mapping(**parameters: str) -> Any:
    entries = ", ".join(
        f'{{ key: "openai.{k}", value: {{ string_value: "{v}" }} }}' for k, v in parameters.items()
    )
    return openai_mapping(parse_pbtxt(f"parameters [ {entries} ]"), "m")


MAPPING = mapping(task="completions,chat", input="P", output="T", max_tokens_limit="100")


def test_a_completion_keeps_the_fields_it_was_given() -> None:
    document = {"model": "m", "prompt": ["hi"], "max_tokens": 5, "temperature": 0, "stop": "x"}
    generation = completion_request(document, MAPPING)
    assert (generation.prompt, generation.stop, generation.stream) == ("hi", ["x"], False)
    assert generation.sampling == {"max_tokens": 5, "temperature": 0.0, "stop": ["x"]}


def test_the_default_chat_template() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}],
        },
    ]
    generation = chat_request({"model": "m", "messages": messages}, MAPPING)
    assert generation.prompt == "system: Be brief.\nuser: Hi!\nassistant: "


def test_the_json_chat_template() -> None:
    json_mapping = mapping(task="chat", input="P", output="T", chat_template="json")
    messages = [{"role": "user", "content": "Hi", "name": "ignored"}]
    generation = chat_request({"model": "m", "messages": messages}, json_mapping)
    assert generation.prompt == '[{"role":"user","content":"Hi"}]'


@pytest.mark.parametrize(
    ("document", "param"),
    [
        ({"prompt": "x", "n": 2}, "n"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
        ({"prompt": "x", "echo": True}, "echo"),
        ({"prompt": "x", "logprobs": 0}, "logprobs"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": "x", "max_tokens": 101}, "max_tokens"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "max_tokens": True}, "max_tokens"),
        ({"prompt": "x", "top_p": 1.5}, "top_p"),
        ({"prompt": "x", "seed": 1.5}, "seed"),
        ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"prompt": "x", "stop": [""]}, "stop"),
        ({"prompt": "x", "stream": "yes"}, "stream"),
        ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
        ({"model": 3, "prompt": "x"}, "model"),
    ],
)
def test_completion_fields_refused(document: dict[str, Any], param: str) -> None:
    with pytest.raises(BadField) as caught:
        completion_request({"model": "m", **document}, MAPPING)
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("document", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}, "tool_choice"),
        ({"messages": [{"role": "user", "content": "x"}], "logprobs": True}, "logprobs"),
    ],
)
def test_chat_fields_refused(document: dict[str, Any], param: str) -> None:
    with pytest.raises(BadField) as caught:
        chat_request({"model": "m", **document}, MAPPING)
    assert caught.value.param == param


def test_embeddings() -> None:
    request = embeddings_request({"model": "e", "input": "a", "encoding_format": "base64"})
    assert (request.texts, request.base64) == (["a"], True)
    with pytest.raises(BadField, match="list of strings"):
        embeddings_request({"model": "e", "input": [[1, 2]]})


def test_mappings_refused() -> None:
    with pytest.raises(NotFound, match=r"openai\.task"):
        mapping(input="P", output="T")
    with pytest.raises(InvalidArgument, match=r"unknown openai\.task"):
        mapping(task="images", input="P", output="T")
    with pytest.raises(InvalidArgument, match=r"openai\.output"):
        mapping(task="chat", input="P")
    with pytest.raises(InvalidArgument, match="chat_template"):
        mapping(task="chat", input="P", output="T", chat_template="jinja")
