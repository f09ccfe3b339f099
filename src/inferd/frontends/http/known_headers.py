"""Binary-tensor request headers seen before, decoded once.

A client sends the same JSON header with every request of a model (names, datatypes, shapes,
binary sizes, outputs asked for); only the binary data after it changes. Parsing and checking
that header cost about a third of the event loop's time per request. So a header that decoded
without fault is kept with what it decoded to (its `Plan`), and the next request with the same
header bytes only views its binary data through the plan: the checks that depend on the header
alone passed for these bytes already, and the one that depends on the body (the binary data's
length) is made again. A request whose data does not fit the plan, or whose header is new,
takes the full path (`codec.decode_infer_request`), with its errors.

Only headers whose meaning cannot change between requests are kept: every input in binary
data with a fixed-size datatype, nothing in shared memory (a region may be unregistered), only
plain values as parameters (each request gets its own copy), no request id (a client that
sets one usually sets a new one each time). At most `MAX_PLANS`
headers are kept, the oldest dropped first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson

from inferd.core.types import InferRequest, Parameters, RequestedOutput
from inferd.frontends.http.codec import decode_infer_request
from inferd.frontends.kept_headers import keep
from inferd.frontends.shared_memory import BYTE_SIZE, OFFSET, REGION, SharedMemoryRegistry

MAX_PLANS: Final = 256
MAX_HEADER_BYTES: Final = 16 * 1024  # longer headers are not kept (nor hashed)
_SHARED_MEMORY_KEYS: Final = frozenset((REGION, BYTE_SIZE, OFFSET))
_SCALARS: Final = (str, int, float, bool, type(None))
# Words of a header that cannot be kept: JSON data, shared memory.
_NOT_KEPT: Final = (b'"data"', b"shared_memory_")


@dataclass(frozen=True, slots=True)
class _Input:
    name: str
    dtype: np.dtype[Any]
    offset: int  # in the body, past the header
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a header decodes to, apart from its binary data."""

    inputs: tuple[_Input, ...]
    binary_bytes: int
    outputs: tuple[tuple[str, Parameters], ...] | None
    parameters: Parameters

    def request(self, body: bytes, model_name: str, model_version: str) -> InferRequest:
        """The request of `body`, whose binary data must hold exactly `binary_bytes`."""
        return InferRequest(
            model_name=model_name,
            model_version=model_version,
            inputs={
                # A read-only view of the body's bytes, as `np.frombuffer` gives.
                i.name: np.ndarray(i.shape, i.dtype, body, i.offset)
                for i in self.inputs
            },
            # Fresh containers: the engine and models may change a request's own.
            outputs=None
            if self.outputs is None
            else [RequestedOutput(name, dict(parameters)) for name, parameters in self.outputs],
            parameters=dict(self.parameters) if self.parameters else {},
        )


class KnownHeaders:
    """`decode`: `codec.decode_infer_request` for binary-tensor bodies, with the plans of the
    headers seen before."""

    __slots__ = ("_plans",)

    def __init__(self) -> None:
        self._plans: dict[bytes, Plan] = {}

    def decode(
        self,
        body: bytes,
        header_length: int,
        model_name: str,
        model_version: str,
        shared_memory: SharedMemoryRegistry,
    ) -> InferRequest:
        known = 0 < header_length <= min(len(body), MAX_HEADER_BYTES)
        if known:
            # The header's own bytes (a copy of at most MAX_HEADER_BYTES): a memoryview of
            # them would hash the whole body it views first (0.6 ms for a 1 MB tensor).
            plan = self._plans.get(body[:header_length])
            if plan is not None and len(body) - header_length == plan.binary_bytes:
                return plan.request(body, model_name, model_version)
        request = decode_infer_request(
            body, header_length, model_name, model_version, shared_memory
        )
        if known and not request.id:
            header = body[:header_length]
            # Cheap refusals before parsing it again (a tensor named so is refused too).
            if not any(word in header for word in _NOT_KEPT):
                plan = _plan(header, header_length, request)
                if plan is not None:
                    keep(self._plans, header, plan, MAX_PLANS)
        return request


def _plan(header: bytes, header_length: int, request: InferRequest) -> Plan | None:
    """The plan of a header that decoded into `request`, or None when it cannot be kept."""
    document = orjson.loads(header)  # it parsed once already: it parses again
    inputs: list[_Input] = []
    offset = header_length
    for item, (name, array) in zip(document["inputs"], request.inputs.items(), strict=True):
        parameters = item.get("parameters") or {}
        if (
            "binary_data_size" not in parameters
            or _SHARED_MEMORY_KEYS.intersection(parameters)
            or array.dtype.kind == "O"  # BYTES: its elements' lengths are in the data
        ):
            return None
        inputs.append(_Input(name, array.dtype, offset, array.shape))
        offset += array.nbytes
    outputs = request.outputs
    if outputs is not None and any(_SHARED_MEMORY_KEYS.intersection(o.parameters) for o in outputs):
        return None
    if not all(_flat(p) for p in [request.parameters, *(o.parameters for o in outputs or ())]):
        return None
    return Plan(
        tuple(inputs),
        offset - header_length,
        None if outputs is None else tuple((o.name, dict(o.parameters)) for o in outputs),
        dict(request.parameters),
    )


def _flat(parameters: Parameters) -> bool:
    """Whether a copy of `parameters` shares nothing mutable with them."""
    return all(isinstance(value, _SCALARS) for value in parameters.values())
