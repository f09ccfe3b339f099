"""ModelInfer and ModelStreamInfer answers serialised with their raw output contents taken
straight from the output arrays.

Through protobuf each output would be copied three times before grpc sees it: into `bytes`
(the only type `raw_output_contents` takes), into the message, and into the serialised
message. Here protobuf serialises the rest of the message (the header) and each output is
copied once, into the joined result. Protobuf writes fields in field-number order, and
`raw_output_contents` is the last field of `ModelInferResponse` (as `infer_response` is of
`ModelStreamInferResponse`), so the header followed by one length-delimited entry per output
is exactly what protobuf would write. Both facts are checked against the descriptors at import.
"""

from __future__ import annotations

from typing import Final, NamedTuple, cast

from google.protobuf.message import Message
from tritonclient.grpc import service_pb2 as pb

from inferd.core.types import Array

# A tensor's wire bytes: `bytes`, or a C-contiguous array whose buffer they are, joined as it
# is (a byte view would cost more than copying a small output, and memoryview refuses BF16).
Chunk = bytes | Array

_LENGTH_DELIMITED: Final = 2  # the protobuf wire type of bytes and embedded messages
_ONE_BYTE_VARINTS: Final = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    """A non-negative integer in protobuf's base-128 varint encoding."""
    if value < 0x80:
        return _ONE_BYTE_VARINTS[value]
    encoded = bytearray()
    while value > 0x7F:
        encoded.append(value & 0x7F | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)


def _last_field_tag(message_class: type[Message], field_name: str) -> bytes:
    """The encoded tag of `field_name`, which must be the last field of its message."""
    descriptor = message_class.DESCRIPTOR
    number: int = descriptor.fields_by_name[field_name].number
    if number != max(field.number for field in descriptor.fields):
        raise RuntimeError(
            f"{descriptor.full_name}.{field_name} is not its last field: "
            "appending it after the other fields would reorder the message"
        )
    return _varint(number << 3 | _LENGTH_DELIMITED)


_RAW_OUTPUT_TAG: Final = _last_field_tag(pb.ModelInferResponse, "raw_output_contents")
_INFER_RESPONSE_TAG: Final = _last_field_tag(pb.ModelStreamInferResponse, "infer_response")


class EncodedInferResponse(NamedTuple):
    """A `ModelInferResponse` in two parts: `header`, the message without
    `raw_output_contents` (or its serialised bytes), and `raw_outputs`, the entries that field
    would hold, in order."""

    header: pb.ModelInferResponse | bytes
    raw_outputs: list[Chunk]

    def header_bytes(self) -> bytes:
        header = self.header
        return header if isinstance(header, bytes) else header.SerializeToString()


def _chunks(response: EncodedInferResponse) -> tuple[list[Chunk], int]:
    """The serialised message in pieces to join, and its length."""
    header = response.header_bytes()
    chunks: list[Chunk] = [header]
    length = len(header)
    for data in response.raw_outputs:
        size = len(data) if isinstance(data, bytes) else data.nbytes
        prefix = _RAW_OUTPUT_TAG + _varint(size)
        chunks += (prefix, data)
        length += len(prefix) + size
    return chunks, length


def _join(chunks: list[Chunk]) -> bytes:
    # numpy's stubs give ndarray the buffer protocol only from Python 3.12.
    return b"".join(cast("list[bytes]", chunks))


def serialize_infer_response(response: EncodedInferResponse | bytes) -> bytes:
    """The bytes of a ModelInfer answer: an `EncodedInferResponse`, or the bytes themselves
    (`message_bytes`)."""
    if isinstance(response, bytes):
        return response
    return _join(_chunks(response)[0])


def serialize_stream_response(
    response: EncodedInferResponse | pb.ModelStreamInferResponse | bytes,
) -> bytes:
    """The bytes of a ModelStreamInfer answer: an `EncodedInferResponse` (a success, sent as
    the `infer_response` of a `ModelStreamInferResponse` without `error_message`), a
    `ModelStreamInferResponse` (a failure), or the bytes themselves (`stream_message`)."""
    if isinstance(response, bytes):
        return response
    if not isinstance(response, EncodedInferResponse):
        return response.SerializeToString()
    chunks, length = _chunks(response)
    return _join([_INFER_RESPONSE_TAG + _varint(length), *chunks])


def infer_prefixes(header: bytes, sizes: list[int]) -> list[bytes]:
    """What comes before each raw output (of `sizes` bytes) in the ModelInfer answer of
    `header` (serialised); the first also the header. See `message_bytes`."""
    entries = [_RAW_OUTPUT_TAG + _varint(size) for size in sizes]
    if not entries:
        return [header]
    entries[0] = header + entries[0]
    return entries


def stream_prefixes(header: bytes, sizes: list[int]) -> list[bytes]:
    """The same for the ModelStreamInfer answer of `header`: the first prefix also starts the
    `infer_response` field that holds the rest."""
    prefixes = infer_prefixes(header, sizes)
    length = sum(len(prefix) for prefix in prefixes) + sum(sizes)
    prefixes[0] = _INFER_RESPONSE_TAG + _varint(length) + prefixes[0]
    return prefixes


def message_bytes(prefixes: list[bytes], raw_outputs: list[Array]) -> bytes:
    """The bytes of an answer from its prefixes (`infer_prefixes`, `stream_prefixes`) and its
    outputs' raw contents (contiguous, of the sizes the prefixes were made for)."""
    if not raw_outputs:
        return prefixes[0]
    if len(raw_outputs) == 1:  # a token's response, mostly: a third of the general case's cost
        return _join([prefixes[0], raw_outputs[0]])
    return _join([chunk for pair in zip(prefixes, raw_outputs, strict=True) for chunk in pair])
