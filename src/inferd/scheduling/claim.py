"""A dynamic batch's claim on its instance's rate limiter resources (`rate_limiter.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from inferd.backends.base import BatchRequest
from inferd.core.types import Array
from inferd.instances.instance import ExecutionResult
from inferd.scheduling.rate_limiter import Gate


class Claim:
    """A batch's claim on its gate's resources, made before the batch is final, so that the
    dynamic batcher can keep adding requests to it while it waits (as Triton adds them to a
    payload waiting in its rate limiter). `granted` (None: taken at once) resolves when the
    resources are taken for it; the claim is then run as the batch's instance, or dropped.
    """

    def __init__(self, gate: Gate) -> None:
        self.name = gate.name
        self.device = gate.device
        self.pipeline_depth = gate.pipeline_depth
        self.granted = gate.limiter.enter(gate)
        self._gate = gate
        self._unused = True

    async def wait(self) -> None:
        """Until the resources are taken for this claim."""
        if self.granted is not None:
            try:
                await self.granted
            except asyncio.CancelledError:
                self.drop()
                raise

    async def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        started: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        """The first execution runs on the claimed resources (awaited first); any more (a
        batch retried one request at a time) take their own, as a gate's do."""
        if not self._unused:
            return await self._gate.execute(inputs, output_names, requests, started)
        await self.wait()
        self._unused = False
        return await self._gate.execute_held(inputs, output_names, requests, started)

    def drop(self) -> None:
        """Nothing ran on the claim (its batch emptied): give it up."""
        if self._unused:
            self._unused = False
            self._gate.limiter.leave(self._gate, self.granted)

    def close(self) -> None:
        """The gate's instance is not the claim's to close."""
