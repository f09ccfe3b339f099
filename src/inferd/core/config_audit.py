"""A model config checked against the field registry (`config_fields.py`) at load, and the
registry as the docs' table.

`python -m inferd.core.config_audit > docs/model_config_fields.md` regenerates the page; a
unit test fails when the page and the registry differ.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from inferd.core.config_fields import REGISTRY, Status
from inferd.core.errors import Unsupported
from inferd.core.model_config import ModelConfig

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Audit:
    """What a config sets that inferd does not honour: warnings, and refusals (any refusal
    makes the model UNAVAILABLE with the reasons)."""

    warnings: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


def audit_config(config: ModelConfig) -> Audit:
    audit = Audit()
    _walk(config, "", audit)
    if config.max_batch_size == 0 and config.HasField("dynamic_batching"):
        audit.warnings.append(
            "'dynamic_batching' has no effect: the model has max_batch_size 0, so it cannot batch"
        )
    # A repeated message reports each field once, not once per element.
    audit.warnings = list(dict.fromkeys(audit.warnings))
    audit.refusals = list(dict.fromkeys(audit.refusals))
    return audit


def enforce_config_fields(config: ModelConfig) -> None:
    """At load: raise `Unsupported` with every refused field, else log each warned one."""
    audit = audit_config(config)
    if audit.refusals:
        raise Unsupported(f"model '{config.name}': {'; '.join(audit.refusals)}")
    for warning in audit.warnings:
        logger.warning("model '%s': %s", config.name, warning)


def _walk(message: Message, prefix: str, audit: Audit) -> None:
    for descriptor, value in message.ListFields():
        path = f"{prefix}{descriptor.name}"
        rule = REGISTRY[field_key(message.DESCRIPTOR.full_name, descriptor.name)]
        if rule.status is Status.WARNED:
            audit.warnings.append(f"'{path}' has no effect in inferd: {rule.note}")
        elif rule.status is Status.REFUSED:
            audit.refusals.append(f"'{path}' is not supported: {rule.note}")
        else:
            for child in _messages(descriptor, value):
                _walk(child, f"{path}.", audit)


def _messages(descriptor: FieldDescriptor, value: Any) -> list[Message]:
    """The messages a set field holds: itself, its elements, or its map's values."""
    if descriptor.message_type is None:
        return []
    if isinstance(value, Message):
        return [value]
    items = value.values() if descriptor.message_type.GetOptions().map_entry else value
    return [item for item in items if isinstance(item, Message)]


def field_key(message_name: str, field_name: str) -> str:
    """A registry key from a message's full name (`inference.ModelInput`) and a field's."""
    return f"{message_name.removeprefix('inference.')}.{field_name}"


def schema_fields(message: Descriptor | None = None) -> Iterator[tuple[str, FieldDescriptor]]:
    """Every field of `ModelConfig` and of the messages it holds, each message once."""
    seen: set[str] = set()
    queue = deque([message or ModelConfig.DESCRIPTOR])  # breadth first: ModelConfig's first
    while queue:
        current = queue.popleft()
        if current.full_name in seen:
            continue
        seen.add(current.full_name)
        for member in current.fields:
            yield field_key(current.full_name, member.name), member
            nested = _value_message(member)
            if nested is not None:
                queue.append(nested)


def _value_message(field: FieldDescriptor) -> Descriptor | None:
    """The message a field holds (for a map, its values' message), if any."""
    nested = field.message_type
    if nested is not None and nested.GetOptions().map_entry:
        nested = nested.fields_by_name["value"].message_type
    return nested


HEADER = """# Model config fields

Every field of Triton's `ModelConfig` (and of the messages it holds), and what inferd does
with it. **honoured**: it works as in Triton. **no effect (warning)**: the model loads, and
the load logs a warning naming the field. **refused**: the model is UNAVAILABLE, with the
reason in the repository index and the log, because serving it without the field would
differ from Triton. `inferd check` reports the same warnings and refusals offline.

This page is generated from the code's registry (`python -m inferd.core.config_audit`);
a test fails when they differ.

| Field | Status | Note |
|---|---|---|
"""


def markdown_table() -> str:
    rows = [
        f"| `{key}` | {REGISTRY[key].status.value} | {REGISTRY[key].note} |"
        for key, _ in schema_fields()
    ]
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
