"""The committed stubs in typings/ describe the protobuf modules tritonclient ships.

Regenerate them with scripts/generate_proto_stubs.py when tritonclient's schema changes.
"""

from __future__ import annotations

import ast
import keyword
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor
from tritonclient.grpc import model_config_pb2, service_pb2

STUBS = Path(__file__).resolve().parents[3] / "typings" / "tritonclient" / "grpc"


class _StubClass:
    """The names a stub class declares (annotated attributes, methods, nested classes)."""

    def __init__(self, node: ast.ClassDef, lines: list[str]) -> None:
        self.classes = {
            c.name: _StubClass(c, lines) for c in node.body if isinstance(c, ast.ClassDef)
        }
        self.names: set[str] = set()
        self.numbers: dict[str, str] = {}  # enum value name -> the number in its comment
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                self.names.add(item.target.id)
                self.numbers[item.target.id] = lines[item.lineno - 1].rpartition("#")[2].strip()
            elif isinstance(item, ast.FunctionDef):
                self.names.add(item.name)


def _stub_module(name: str) -> _StubClass:
    text = (STUBS / f"{name}.pyi").read_text()
    tree = ast.parse(text)
    return _StubClass(ast.ClassDef(name=name, body=tree.body, decorator_list=[]), text.splitlines())  # type: ignore[call-arg]


def _check_enum(enum: descriptor.EnumDescriptor, scope: _StubClass) -> list[str]:
    values = scope.classes.get(f"_{enum.name}EnumTypeWrapper")
    if values is None or enum.name not in scope.classes:
        return [f"enum {enum.full_name} is missing"]
    declared = values.numbers
    return [
        f"enum value {enum.full_name}.{value.name} = {value.number} is missing or renumbered"
        for value in enum.values
        if declared.get(value.name) != str(value.number)
    ]


def _check_message(message: descriptor.Descriptor, scope: _StubClass) -> list[str]:
    stub = scope.classes.get(message.name)
    if stub is None:
        return [f"message {message.full_name} is missing"]
    problems = [
        f"field {message.full_name}.{field.name} is missing"
        for field in message.fields
        if f"{field.name.upper()}_FIELD_NUMBER" not in stub.names
        # a field named by a Python keyword (`global`) has no attribute, only getattr
        or (field.name not in stub.names and not keyword.iskeyword(field.name))
    ]
    for enum in message.enum_types:
        problems += _check_enum(enum, stub)
    for nested in message.nested_types:
        if not nested.GetOptions().map_entry:
            problems += _check_message(nested, stub)
    return problems


@pytest.mark.parametrize("module", [model_config_pb2, service_pb2], ids=lambda m: m.__name__)
def test_stubs_match_the_runtime_descriptors(module: ModuleType) -> None:
    name = module.__name__.rpartition(".")[2]
    stub = _stub_module(name)
    file: descriptor.FileDescriptor = module.DESCRIPTOR
    problems: list[str] = []
    for message in file.message_types_by_name.values():
        problems += _check_message(message, stub)
    for enum in file.enum_types_by_name.values():
        problems += _check_enum(enum, stub)
    assert not problems, f"typings/ is out of date; run scripts/generate_proto_stubs.py: {problems}"


def test_a_stale_stub_is_caught() -> None:
    """The check itself fails on a stub that lacks a field the descriptor has."""
    stub = _stub_module("model_config_pb2")
    stub.classes["ModelInput"].names.discard("dims")
    problems = _check_message(model_config_pb2.ModelInput.DESCRIPTOR, stub)
    assert problems == ["field inference.ModelInput.dims is missing"]
