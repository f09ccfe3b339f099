"""ModelInfer answers whose header (everything but the raw output contents) was built before.

A model answers request after request with the same header: model, version, each output's
name, datatype and shape, usually no id and no parameters. Building that header as a protobuf
message and serialising it cost about a tenth of a unary call's time in the event loop; so the
serialised header of each distinct (model, version, id, outputs' names, datatypes and shapes)
is kept, and an answer whose header is known costs only its outputs' raw contents. Where no
output is BYTES (whose size changes with its elements), the bytes before each output are kept
instead, and the answer is joined at once into the bytes grpc sends (0.2 us against 2.7 us for
the MLP's answer through `EncodedInferResponse` and the serializer). Answers with parameters or
with an output asked for in shared memory are built in full each time (that output is written
for each answer). At most `MAX_HEADERS` are kept, the oldest dropped first.
(`stream_encoder.py` does the same for the responses of one streamed request.)
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from inferd.core.datatypes import BYTES
from inferd.core.types import InferResponse, RequestedOutput
from inferd.frontends.grpc.codec import encode_infer_response, raw_contents
from inferd.frontends.grpc.wire import EncodedInferResponse, infer_prefixes, message_bytes
from inferd.frontends.kept_headers import answer_key, keep
from inferd.frontends.shared_memory import REGION, SharedMemoryRegistry

MAX_HEADERS: Final = 256


class UnaryHeaders:
    """`encode`: `codec.encode_infer_response`, with the serialised headers seen before."""

    __slots__ = ("_headers",)

    def __init__(self) -> None:
        # key -> the message's bytes around the outputs' (`infer_prefixes`; no BYTES output,
        # whose size changes), or (serialised header, each output's datatype)
        self._headers: dict[tuple[Any, ...], list[bytes] | tuple[bytes, tuple[str, ...]]] = {}

    def encode(
        self,
        response: InferResponse,
        requested: list[RequestedOutput] | None,
        shared_memory: SharedMemoryRegistry,
    ) -> EncodedInferResponse | bytes:
        if response.parameters or any(REGION in o.parameters for o in requested or ()):
            return _in_full(response, requested, shared_memory)
        outputs = response.outputs
        key = answer_key(response)
        known = self._headers.get(key)
        if isinstance(known, list):  # the answer's bytes, joined at once
            return message_bytes(known, [np.ascontiguousarray(a) for a in outputs.values()])
        if known is not None:
            header, datatypes = known
            raw = [raw_contents(a, t) for a, t in zip(outputs.values(), datatypes, strict=True)]
            return EncodedInferResponse(header, raw)
        encoded = _in_full(response, requested, shared_memory)
        message = encoded.header
        assert isinstance(message, pb.ModelInferResponse)  # built here, not yet serialised
        header = message.SerializeToString()
        datatypes = tuple(output.datatype for output in message.outputs)
        if BYTES in datatypes:
            keep(self._headers, key, (header, datatypes), MAX_HEADERS)
        else:
            sizes = [array.nbytes for array in outputs.values()]
            keep(self._headers, key, infer_prefixes(header, sizes), MAX_HEADERS)
        return EncodedInferResponse(header, encoded.raw_outputs)


def _in_full(
    response: InferResponse,
    requested: list[RequestedOutput] | None,
    shared_memory: SharedMemoryRegistry,
) -> EncodedInferResponse:
    return encode_infer_response(response, pb.ModelInferResponse(), requested, shared_memory)
