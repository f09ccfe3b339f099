"""The OTLP bytes of a request's usual four spans (itself, `decode`, `queue`, `encode`), made by
one `struct` call per request.

Most traced requests differ only in fixed-width fields: ids (the trace's, repeated in each span,
and the spans'), times (fixed64) and the request id (of a length seen before). For each kind
of such request (its span's name, model, version, request id length, whether it continues a
client's span) a `RequestLayout` holds everything else as constant runs of bytes, and one
`struct.Struct` packs runs and fields together into one piece of an export request. The bytes
are those `otel_records.RequestRecord` makes span by span (`tests/unit/metrics/
test_otel_encode.py` compares both with the SDK's).
"""

from __future__ import annotations

import operator
import struct

from inferd.metrics import otel_encode as wire

# Where each field sits in the values a request gives `RequestLayout.spans`.
TRACE, OWN, PARENT, DECODE, QUEUE, ENCODE, REQUEST_ID = range(7)
START, STOP, DECODED, QUEUED, UNQUEUED, SENT = range(7, 13)
FIELDS = 13

# A constant run of bytes, or a field: its struct code and its place in the values.
Part = bytes | tuple[str, int]

_TRACE_ID = (b"\x0a\x10", ("16s", TRACE))
_DECODE = wire.name_and_kind("decode", wire.INTERNAL)
_QUEUE = wire.name_and_kind("queue", wire.INTERNAL)
_ENCODE = wire.name_and_kind("encode", wire.INTERNAL)


def _code(part: Part) -> str:
    return f"{len(part)}s" if isinstance(part, bytes) else part[0]


def _span(body: list[Part]) -> list[Part]:
    """A `ScopeSpans.spans` field holding `body`."""
    size = struct.calcsize("<" + "".join(_code(p) for p in body))
    return [b"\x12" + wire.varint(size), *body]


def _times(named: bytes, start: int, end: int) -> list[Part]:
    return [named + b"\x39", ("Q", start), b"\x41", ("Q", end)]


def _child(span_id: int, named: bytes, start: int, end: int) -> list[Part]:
    ids: list[Part] = [b"\x12\x08", ("8s", span_id), b"\x22\x08", ("8s", OWN)]
    return _span([*_TRACE_ID, *ids, *_times(named, start, end), wire.LOCAL])


class RequestLayout:
    """The four spans of a request named `named` (`name_and_kind`) with attributes `model`
    and `version` (encoded `string_attribute`s), a request id of `id_size` bytes, and a parent
    span from another process or none."""

    def __init__(
        self, named: bytes, model: bytes, request_id_key: bytes, id_size: int, version: bytes,
        remote: bool,
    ) -> None:  # fmt: skip
        id_attribute = wire.string_attribute(request_id_key, "x" * id_size)
        ids: list[Part] = [b"\x12\x08", ("8s", OWN)]
        if remote:
            ids += [b"\x22\x08", ("8s", PARENT)]
        spans = [
            _span([
                *_TRACE_ID, *ids, *_times(named, START, STOP),
                model + id_attribute[:-id_size or None], (f"{id_size}s", REQUEST_ID),
                version + (wire.REMOTE if remote else wire.LOCAL),
            ]),
            _child(DECODE, _DECODE, START, DECODED),
            _child(QUEUE, _QUEUE, QUEUED, UNQUEUED),
            _child(ENCODE, _ENCODE, SENT, STOP),
        ]  # fmt: skip
        parts = _merged([part for span in spans for part in span])
        self._struct = struct.Struct("<" + "".join(map(_code, parts)))
        # The struct's arguments, picked from the constants followed by a request's values.
        self._constants = tuple(part for part in parts if isinstance(part, bytes))
        offset = len(self._constants)
        order, constant = [], 0
        for part in parts:
            if isinstance(part, bytes):
                order.append(constant)
                constant += 1
            else:
                order.append(offset + part[1])
        self._pick = operator.itemgetter(*order)

    def spans(self, values: tuple[bytes | int, ...]) -> bytes:
        """The four spans of a request with `values` (`FIELDS` of them, in the order above)."""
        return self._struct.pack(*self._pick(self._constants + values))


def _merged(parts: list[Part]) -> list[Part]:
    """`parts` with adjacent constant runs joined."""
    merged: list[Part] = []
    for part in parts:
        last = merged[-1] if merged else None
        if isinstance(part, bytes) and isinstance(last, bytes):
            merged[-1] = last + part
        else:
            merged.append(part)
    return merged
