"""Binary-tensor answers whose JSON header was written before.

When every output goes back as binary data, the JSON header of an answer says only the model,
version, id, and each output's name, datatype, shape and byte size: the same for request after
request of one model. So the header of each distinct (model, version, id, outputs' names,
datatypes and shapes) is kept, and an answer whose header is known costs only joining it with
its outputs' bytes. Answers with parameters, with an output in JSON or in shared memory, or
with a BYTES output (its byte size depends on its elements) are written in full each time
(`codec.encode_infer_response`). At most `MAX_HEADERS` are kept, the oldest dropped first.
"""

from __future__ import annotations

from typing import Any, Final, cast

import numpy as np

from inferd.core.types import InferRequest, InferResponse
from inferd.frontends.http.codec import encode_infer_response
from inferd.frontends.kept_headers import answer_key, keep
from inferd.frontends.shared_memory import REGION, SharedMemoryRegistry

MAX_HEADERS: Final = 256


class BinaryAnswers:
    """`encode`: `codec.encode_infer_response`, with the JSON headers written before."""

    __slots__ = ("_headers",)

    def __init__(self) -> None:
        self._headers: dict[tuple[Any, ...], bytes] = {}

    def encode(
        self, response: InferResponse, request: InferRequest, shared_memory: SharedMemoryRegistry
    ) -> tuple[bytes, int | None]:
        """(body, JSON header length when binary data follows it, else None)."""
        outputs = response.outputs
        if response.parameters or not outputs or not _all_binary(response, request):
            return encode_infer_response(response, request, shared_memory)
        key = answer_key(response)
        header = self._headers.get(key)
        if header is None:
            body, length = encode_infer_response(response, request, shared_memory)
            assert length is not None  # every output is binary
            keep(self._headers, key, body[:length], MAX_HEADERS)
            return body, length
        # A C-contiguous array joins as its bytes, uncopied until the join.
        chunks = [np.ascontiguousarray(array) for array in outputs.values()]
        return b"".join(cast("list[bytes]", [header, *chunks])), len(header)


def _all_binary(response: InferResponse, request: InferRequest) -> bool:
    """Whether every output goes back as binary data, none of them BYTES or in shared memory."""
    default = bool(request.parameters.get("binary_data_output", False))
    # The outputs asked for are few (and their names distinct): scanning them costs less than
    # a dict of them per answer.
    requested = request.outputs or ()
    for name, array in response.outputs.items():
        if array.dtype.kind == "O":
            return False
        binary = default
        for output in requested:
            if output.name == name:
                if REGION in output.parameters:
                    return False
                binary = bool(output.parameters.get("binary_data", default))
                break
        if not binary:
            return False
    return True
