"""The one interface every scheduler offers the engine."""

from __future__ import annotations

from typing import Protocol

from inferd.core.types import Array, InferRequest


class Scheduler(Protocol):
    def start(self) -> None:
        """Begin dispatching; called on the event loop once the instances exist."""

    async def submit(self, request: InferRequest) -> dict[str, Array]:
        """Queue a validated request and return its outputs once its batch has run."""

    def pending(self) -> int:
        """Requests queued and not yet handed to an instance."""

    async def stop(self) -> None:
        """Finish every request already accepted, then stop dispatching."""
