"""The in-process request and response that every frontend decodes into and encodes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy.typing as npt

if TYPE_CHECKING:
    from inferd.core.responses import ResponseChannel
    from inferd.core.tracing import RequestSpan, TraceParent

Array = npt.NDArray[Any]
Parameters = dict[str, Any]
# `Timestamps.parent_id` of a request made by one that is not traced in Triton's trace files.
UNTRACED_PARENT = -1


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for; `parameters` carries frontend-specific options."""

    name: str
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class Timestamps:
    """Monotonic nanosecond marks along a request's path (0 = not reached).

    The compute marks are Triton's: inputs are gathered between `compute_start` and
    `compute_input_end`, the model runs until `compute_output_start`, and outputs are
    split per request until `compute_end`.
    """

    received: int = 0
    queued: int = 0
    compute_start: int = 0
    compute_input_end: int = 0
    compute_output_start: int = 0
    compute_end: int = 0
    sent: int = 0
    # Response cache: the lookup of a hit, or the lookup and insertion of a miss (each at
    # least 1 when it happened, 0 otherwise).
    cache_hit_ns: int = 0
    cache_miss_ns: int = 0
    first_response: int = 0  # a decoupled request's first response (a unary one's is `sent`)
    # Every response's, kept only where a frontend sets a list (Triton's generate endpoints
    # trace each response; its gRPC stream only the first).
    responses: list[int] | None = None
    # The frontend that read the request off the wire ("HTTP" or "GRPC"; "" for one made in
    # the server) and when it had read it (0: as it was received).
    protocol: str = ""
    read: int = 0
    # The frontend's send of the request's one answer, for Triton's trace files: a frontend
    # that stamps it says so (`sends`) and, for a traced request (`trace_id`) answered, reports
    # it once sent or failed (`Engine.request_sent`), which completes the request's trace.
    sends: bool = False
    send_start: int = 0
    send_end: int = 0
    # Triton's trace files: the request's trace id, 0 while it is not traced there; and for
    # a request made in the server (an ensemble's step, a model's call), the trace id of the
    # request that made it, whose child it is traced as (UNTRACED_PARENT: that one is not
    # traced, so neither is this one); 0 for a client's request.
    trace_id: int = 0
    parent_id: int = 0

    def copy_compute(self, batch: Timestamps) -> None:
        """Take the compute marks of the batch this request ran in."""
        self.compute_start = batch.compute_start
        self.compute_input_end = batch.compute_input_end
        self.compute_output_start = batch.compute_output_start
        self.compute_end = batch.compute_end


@dataclass(slots=True)
class InferRequest:
    """One inference request.

    `model_version` is "" when the client named none (the server picks per version policy).
    `outputs` is None when the client asked for every output. `responses` is where a
    decoupled model sends its responses (set by the engine's `stream`; None otherwise).
    `cancelled` is set by the engine when the request's client went away (a cancelled call or
    stream, a deadline passed, a disconnect); a running model may poll it and stop.
    `trace_parent` and `span`: the trace context it continues and its span, when traced as
    spans (`inferd.core.tracing`).
    """

    model_name: str
    inputs: dict[str, Array]
    model_version: str = ""
    id: str = ""
    outputs: list[RequestedOutput] | None = None
    parameters: Parameters = field(default_factory=dict)
    timestamps: Timestamps = field(default_factory=Timestamps)
    responses: ResponseChannel | None = None
    cancelled: bool = False
    trace_parent: TraceParent | None = None
    span: RequestSpan | None = None

    def batch_size(self) -> int:
        """Rows along the first axis of the first input (1 for a scalar-only request)."""
        for array in self.inputs.values():
            return int(array.shape[0]) if array.ndim else 1
        return 0


@dataclass(slots=True)
class InferResponse:
    """The outputs of one request, in the order they should be reported.

    `final` is False for a decoupled model's responses before its last; the final flag may
    come alone, as a response without outputs.
    """

    model_name: str
    model_version: str
    outputs: dict[str, Array]
    id: str = ""
    parameters: Parameters = field(default_factory=dict)
    final: bool = True
