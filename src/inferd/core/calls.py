"""How a model calls other models of the same server (Triton's Business Logic Scripting):
what the engine lends to backends whose code may do so. Called from a model's own thread,
never from the event loop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Protocol

from inferd.core.errors import Unsupported
from inferd.core.types import InferRequest, InferResponse

# The request parameter naming the models waiting on a model's call to another model (a list
# of names, the closest last): set by the caller's backend, carried into ensemble steps.
CALLERS = "inferd_bls_callers"


def refuse_waiting_caller(model_name: str, callers: Sequence[str]) -> None:
    """The deadlock rule: a request for a model already waiting on it (itself, directly or
    through other models or an ensemble's steps) could wait forever for an instance its own
    caller holds, so it is refused (UNSUPPORTED)."""
    if model_name in callers:
        chain = " -> ".join((*callers, model_name))
        raise Unsupported(
            f"BLS call to model '{model_name}' refused: it is already waiting on this "
            f"request ({chain}), so it could wait forever for its own busy instance"
        )


class ResponseStream(Protocol):
    """The responses of a streamed call, in order; `close` (from any thread, or dropping
    the stream) before the last one cancels the call's request."""

    def __iter__(self) -> Iterator[InferResponse]: ...

    def __next__(self) -> InferResponse: ...

    def close(self) -> None: ...


class ModelCalls(Protocol):
    def submit(self, request: InferRequest) -> Future[InferResponse]:
        """Run `request` through the engine (its model's checks, scheduler, statistics);
        the future fails with an `InferdError`; cancelling it cancels the request."""

    def call(self, request: InferRequest) -> InferResponse:
        """`submit`, waited for in this thread (raises the call's `InferdError`); the called
        model may run on this thread meanwhile."""

    def stream(self, request: InferRequest) -> ResponseStream:
        """Every response of `request` (a decoupled model's stream; one for any other), the
        last with `final` set; raises the request's `InferdError`. The request starts at
        once; closing the stream early cancels it."""
