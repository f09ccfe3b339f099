"""The responses of one decoupled request, encoded for `ModelStreamInfer`.

A generative model sends many small responses per request (a token each), whose headers
(model, version, id, each output's name, datatype and shape, the parameters) rarely differ
from one to the next. Each distinct header is built and serialised through protobuf once per
request; a response whose header was seen before costs only its outputs' raw contents. When
no output is BYTES, the outputs' sizes follow from the header too, and so does every byte of
the message but the outputs': such a response is encoded to its final bytes here. A
response of one output (a token) whose parameters, output name, datatype and shape are
those of the last such response reuses its bytes without looking its header up.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from inferd.core.datatypes import BYTES, v2_datatype
from inferd.core.types import Array, InferResponse, RequestedOutput
from inferd.frontends.grpc.codec import encode_infer_response, raw_contents
from inferd.frontends.grpc.wire import EncodedInferResponse, message_bytes, stream_prefixes
from inferd.frontends.shared_memory import REGION, SharedMemoryRegistry

# Distinct headers kept per request: a model whose shapes change with every response (text
# that grows) gains nothing from them, and must not grow the cache.
MAX_HEADERS: Final = 8


class StreamEncoder:
    """Encodes the responses of one request, the outputs `requested` of them."""

    __slots__ = ("_headers", "_in_shared_memory", "_last", "_requested", "_shared_memory")

    def __init__(
        self, requested: list[RequestedOutput] | None, shared_memory: SharedMemoryRegistry
    ) -> None:
        self._requested = requested
        self._shared_memory = shared_memory
        # An output written to shared memory is written for each response: never cached.
        self._in_shared_memory = any(REGION in o.parameters for o in requested or ())
        # Per distinct header: its bytes, or (no BYTES output) the message's bytes around the
        # outputs' (`stream_prefixes`).
        self._headers: dict[tuple[Any, ...], bytes | list[bytes]] = {}
        self._last: _Token | None = None  # the header of the last token reused

    def encode(self, response: InferResponse) -> EncodedInferResponse | bytes:
        if self._in_shared_memory:
            return self._encode_in_full(response)
        outputs = response.outputs
        last = self._last
        if last is not None and len(outputs) == 1:
            ((name, array),) = outputs.items()
            if (
                name == last.name
                and array.shape == last.shape
                and array.dtype == last.dtype
                and response.parameters == last.parameters
            ):
                return message_bytes(last.prefixes, [np.ascontiguousarray(array)])
        key = (
            tuple(response.parameters.items()),
            *[(name, array.dtype, array.shape) for name, array in outputs.items()],
        )
        try:
            header = self._headers.get(key)
        except TypeError:  # a parameter whose value cannot be hashed: nothing to reuse
            return self._encode_in_full(response)
        if header is None:
            encoded = self._encode_in_full(response)
            if len(self._headers) >= MAX_HEADERS:
                self._headers.clear()
            self._headers[key] = _reusable(encoded.header_bytes(), outputs)
            return encoded
        if isinstance(header, list):
            if len(outputs) == 1:
                ((name, array),) = outputs.items()
                parameters = dict(response.parameters)  # its values hash: immutable
                self._last = _Token(parameters, name, array.dtype, array.shape, header)
            return message_bytes(header, [np.ascontiguousarray(a) for a in outputs.values()])
        raw = [raw_contents(array, v2_datatype(array.dtype)) for array in outputs.values()]
        return EncodedInferResponse(header, raw)

    def _encode_in_full(self, response: InferResponse) -> EncodedInferResponse:
        return encode_infer_response(
            response, pb.ModelInferResponse(), self._requested, self._shared_memory
        )


class _Token(NamedTuple):
    """A header of one output without BYTES, and what a response must match to reuse it."""

    parameters: dict[str, Any]
    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    prefixes: list[bytes]


def _reusable(header: bytes, outputs: dict[str, Array]) -> bytes | list[bytes]:
    """What a later response with this header (and outputs shaped as these) reuses."""
    if any(v2_datatype(array.dtype) == BYTES for array in outputs.values()):
        return header  # their sizes vary
    return stream_prefixes(header, [array.nbytes for array in outputs.values()])
