"""The scheduler of a model whose every instance is passive (`passive: true`): loaded, but
given no work, so each request is refused at once rather than queued for ever."""

from __future__ import annotations

from inferd.core.errors import Unavailable
from inferd.core.types import Array, InferRequest


class PassiveOnly:
    def start(self) -> None:
        """Nothing to dispatch to."""

    async def submit(self, request: InferRequest) -> dict[str, Array]:
        raise Unavailable(
            f"every instance of model '{request.model_name}' is passive (instance_group "
            "passive: true), so the scheduler gives it no requests"
        )

    def pending(self) -> int:
        return 0

    async def stop(self) -> None:
        """Nothing queued to finish."""
