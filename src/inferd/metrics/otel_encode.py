"""OTLP's protobuf wire format for spans, written as bytes without message objects.

The SDK's encoder builds a message per span, per attribute and per value, and was most of what
tracing every request cost. The messages inferd sends are few and mostly constant: a resource
and a scope encoded once, names and attribute keys encoded once per model, ids and times packed
with `struct`. `tests/unit/metrics/test_otel_encode.py` checks that these bytes decode to what
the SDK's encoder sends for the same spans. Field numbers: opentelemetry/proto/trace/v1 and
common/v1 (`Span`, `KeyValue`, `AnyValue`, ...).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Span.flags: whether the parent's remoteness is known, and whether it is remote.
HAS_IS_REMOTE = 0x100
IS_REMOTE = 0x200
# Span.kind as OTLP counts it.
INTERNAL = 1
SERVER = 2
# Status.code
STATUS_ERROR = 2

# Span fields 7 and 8 (fixed64 start and end times), each after its tag.
_TIMES = struct.Struct("<BQBQ")
_FIXED32 = struct.Struct("<I")
_DOUBLE = struct.Struct("<d")
# Span.flags (field 16, fixed32) of a span without a parent or with a local one, and with a
# remote one.
LOCAL = b"\x85\x01" + _FIXED32.pack(HAS_IS_REMOTE)
REMOTE = b"\x85\x01" + _FIXED32.pack(HAS_IS_REMOTE | IS_REMOTE)
_LINK_FLAGS = b"\x35" + _FIXED32.pack(HAS_IS_REMOTE)  # Link.flags of a local span
_BYTE = [bytes((i,)) for i in range(0x80)]  # a varint below 0x80
_LENGTH_DELIMITED = [bytes((number << 3 | 2,)) for number in range(16)]  # field tags


def varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _BYTE[value]
    return _varint(value)


def _varint(value: int) -> bytes:
    value &= 0xFFFF_FFFF_FFFF_FFFF  # a negative int64 as its two's complement
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# The length of a span as most are (below 2 KiB), encoded once.
_SIZES = 0x800
_SIZE = [varint(size) for size in range(_SIZES)]


def nested(number: int, payload: bytes) -> bytes:
    """Field `number` (below 16) holding `payload` (a message, bytes or a UTF-8 string)."""
    size = len(payload)
    return _LENGTH_DELIMITED[number] + (_BYTE[size] if size < 0x80 else varint(size)) + payload


def text(number: int, value: str) -> bytes:
    return nested(number, value.encode())


def key_values(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    """`attributes` as repeated `KeyValue` field `number`."""
    return b"".join(
        nested(number, text(1, key) + nested(2, any_value(value)))
        for key, value in (attributes or {}).items()
    )


def any_value(value: Any) -> bytes:
    """An `AnyValue`'s fields, as the SDK chooses them (bool before int: a bool is an int)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10" + varint(int(value))
    if isinstance(value, str):
        return text(1, value)
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return nested(7, value)
    if isinstance(value, Sequence):
        return nested(5, b"".join(nested(1, any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return nested(6, key_values(1, {str(key): item for key, item in value.items()}))
    return text(1, str(value))


def name_and_kind(name: str, kind: int) -> bytes:
    """A span's `name` and `kind` fields."""
    return text(5, name) + b"\x30" + varint(kind)


def trace_state(header: str) -> bytes:
    """A span's `trace_state` field ("" when it has none)."""
    return text(3, header) if header else b""


def attributes(values: Mapping[str, Any]) -> bytes:
    return key_values(9, values)


def attribute_key(key: str) -> bytes:
    """The start of a span's string attribute `key` (`string_attribute`)."""
    return text(1, key)


def string_attribute(key: bytes, value: str) -> bytes:
    """A span's attribute `key` (from `attribute_key`) of string `value`."""
    return nested(9, key + nested(2, text(1, value)))


def event(name: str, time: int) -> bytes:
    return nested(11, b"\x09" + struct.pack("<Q", time) + text(2, name))


class EventPair:
    """Two events of a span, named once: each encoding packs their times with one struct."""

    def __init__(self, first: str, second: str) -> None:
        # An event: its tag and size, the tag of its time, the time (fixed64), then its name.
        (head, tail), (head_2, tail_2) = (
            event(name, 0).split(bytes(8)) for name in (first, second)
        )
        self._runs = head, tail + head_2, tail_2
        self._struct = struct.Struct(f"<{len(head)}sQ{len(tail + head_2)}sQ{len(tail_2)}s")

    def encode(self, first: int, second: int) -> bytes:
        head, middle, tail = self._runs
        return self._struct.pack(head, first, middle, second, tail)


# A link to a span of this process: its tag and size (33) and trace id's tag; the trace id;
# the span id's tag; the span id; its flags.
_LINK = struct.Struct("<4s16s2s8s5s")
_LINK_HEAD = b"\x6a\x21\x0a\x10"


def link(trace_id: bytes, span_id: bytes) -> bytes:
    """A link to a span of this process."""
    return _LINK.pack(_LINK_HEAD, trace_id, b"\x12\x08", span_id, _LINK_FLAGS)


def error(message: str) -> bytes:
    """The `status` field of a span that failed."""
    return nested(15, text(2, message) + b"\x18" + varint(STATUS_ERROR))


def span_ids(span_id: bytes, parent: bytes | None) -> bytes:
    """A span's `span_id` and `parent_span_id` fields."""
    return b"\x12\x08" + span_id + (b"\x22\x08" + parent if parent else b"")


def span(
    head: bytes, ids: bytes, named: bytes, start: int, end: int, rest: bytes, flags: bytes
) -> bytes:
    """One `ScopeSpans.spans` field. `head`: `trace_head`; `ids`: `span_ids`; `named`:
    `name_and_kind`; `rest`: attributes, events, links and status; `flags`: `LOCAL` or
    `REMOTE` (its parent's)."""
    body = head + ids + named + _TIMES.pack(0x39, start, 0x41, end) + rest + flags
    size = len(body)
    return b"\x12" + (_SIZE[size] if size < _SIZES else _varint(size)) + body


def trace_head(trace_id: bytes, state: bytes) -> bytes:
    """A span's `trace_id` field followed by its `trace_state` field (`trace_state`)."""
    return b"\x0a\x10" + trace_id + state


class Envelope:
    """The `ExportTraceServiceRequest` around spans of one resource and instrumentation
    scope, its constant parts encoded once."""

    def __init__(self, resource: Mapping[str, Any], schema_url: str, scope: str) -> None:
        self._resource = nested(1, key_values(1, resource))
        self._schema_url = text(3, schema_url) if schema_url else b""
        self._scope = nested(1, text(1, scope))

    def request(self, spans: Iterable[bytes]) -> bytes:
        """The request carrying `spans` (each from `span`, or several such joined)."""
        scope_spans = nested(2, self._scope + b"".join(spans))
        return nested(1, self._resource + scope_spans + self._schema_url)
