"""A Python model calling another model of this server (Triton's Business Logic Scripting),
from the model's own thread, through the engine (the callee's checks, scheduler, statistics).

The deadlock rule: a model never calls a model that is already waiting on the request it is
running (itself, directly or through other models). That call could wait forever for an
instance held by its own caller, so it is refused at once (UNSUPPORTED). Each call names its
callers in the request (the parameter `BLS_CALLERS`), so the rule holds across models.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from typing import Any

from inferd.backends.base import BatchRequest
from inferd.backends.python.model_scope import current
from inferd.core.calls import CALLERS, ModelCalls, ResponseStream, refuse_waiting_caller
from inferd.core.errors import Unavailable
from inferd.core.tracing import TraceParent
from inferd.core.types import UNTRACED_PARENT, InferRequest, InferResponse

# Hidden from the called model by the backend; the engine applies the rule to every request
# that carries it, ensemble steps included.
BLS_CALLERS = CALLERS


def prepared(request: InferRequest) -> InferRequest:
    """`request` named with its callers; raises `Unsupported` for a call the deadlock rule
    refuses."""
    scope = current()
    callers = (*scope.callers, scope.model_name) if scope.model_name else scope.callers
    refuse_waiting_caller(request.model_name, callers)
    request.parameters[BLS_CALLERS] = list(callers)
    if request.trace_parent is None:
        request.trace_parent = scope.trace_parent
    timestamps = request.timestamps
    if not timestamps.parent_id:  # not named by the call (Triton's `trace=request.trace()`)
        timestamps.parent_id = scope.trace_id or UNTRACED_PARENT
    return request


def calls_parent(requests: Sequence[BatchRequest]) -> TraceParent | None:
    """The span of the batch's first traced request, which the model's calls go under."""
    for request in requests:
        origin = request.origin
        if isinstance(origin, InferRequest) and origin.span is not None:
            parent = origin.span.context("bls")
            if parent is not None:
                return parent
    return None


def calls_trace(requests: Sequence[BatchRequest]) -> int:
    """The trace (in Triton's trace files) of the batch's first traced request, which the
    model's calls are children of unless a call names its own; 0: none is traced."""
    for request in requests:
        trace_id = request.traced_id()
        if trace_id:
            return trace_id
    return 0


def callers_of(parameters: dict[str, Any]) -> tuple[str, ...]:
    names = parameters.get(BLS_CALLERS, ())
    return tuple(str(name) for name in names) if isinstance(names, list) else ()


def infer(request: InferRequest, timeout_s: float | None = None) -> InferResponse:
    """The response, waited for in this thread; raises the call's `InferdError`."""
    calls = _calls()
    if timeout_s is None:
        return calls.call(prepared(request))
    # Bounded: the called model never runs on this thread, which could not stop waiting.
    future = calls.submit(prepared(request))
    try:
        return future.result(timeout_s)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise Unavailable(
            f"BLS call to model '{request.model_name}' timed out after {timeout_s:g} s"
        ) from None


async def infer_async(request: InferRequest, timeout_s: float | None = None) -> InferResponse:
    """As `infer`, awaited on the calling model's own event loop."""
    future = _calls().submit(prepared(request))
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
    except TimeoutError:
        raise Unavailable(
            f"BLS call to model '{request.model_name}' timed out after {timeout_s:g} s"
        ) from None


def stream(request: InferRequest) -> ResponseStream:
    """Every response of `request` (a decoupled model's stream), the last one `final`;
    closing it (or dropping it) before its end cancels the request."""
    return _calls().stream(prepared(request))


def _calls() -> ModelCalls:
    calls = current().calls
    if calls is None:
        raise Unavailable(
            "this model cannot call other models here: BLS works from the model's hooks "
            "(initialize, execute, finalize) or threads they start in a worker process"
        )
    return calls
