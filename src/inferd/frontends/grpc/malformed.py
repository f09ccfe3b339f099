"""Request bytes that do not parse as their protobuf message (truncated, garbage, a `string`
field that is not UTF-8).

grpc answers an exception raised by a request deserializer with UNKNOWN, so the deserializers
built here hand the servicer a `Malformed` instead, which it answers as INVALID_ARGUMENT
(in-stream for ModelStreamInfer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from inferd.core.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class Malformed:
    message_type: str
    reason: str
    # What a stream's in-stream error echoes of the request it answers; unknown here.
    model_name: str = ""
    model_version: str = ""
    id: str = ""

    def error(self) -> InvalidArgument:
        return InvalidArgument(f"malformed {self.message_type} message: {self.reason}")


def parser(message_class: Any) -> Callable[[bytes], Any]:
    """`message_class.FromString`, answering a `Malformed` for bytes that do not parse."""
    name = message_class.DESCRIPTOR.full_name

    def parse(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return Malformed(name, str(exc))

    return parse
