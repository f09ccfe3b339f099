"""How a model calls other models of the same server (Triton's Business Logic Scripting):
what the engine lends to backends whose code may do so. Called from a model's own thread,
never from the event loop."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from typing import Protocol

from inferd.core.types import InferRequest, InferResponse


class ModelCalls(Protocol):
    def submit(self, request: InferRequest) -> Future[InferResponse]:
        """Run `request` through the engine (its model's checks, scheduler, statistics);
        the future fails with an `InferdError`; cancelling it cancels the request."""

    def stream(self, request: InferRequest) -> Iterator[InferResponse]:
        """Every response of `request` (a decoupled model's stream; one for any other), the
        last with `final` set; raises the request's `InferdError`. Closing the iterator early
        cancels the request."""
