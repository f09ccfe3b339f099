"""A model instance: one backend instance plus the one thread that runs its batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from inferd.backends.base import BackendInstance, Device
from inferd.core.errors import InferdError, ModelExecutionError
from inferd.core.types import Array


@dataclass(slots=True)
class ExecutionResult:
    outputs: dict[str, Array]
    compute_start_ns: int
    compute_end_ns: int


class ModelInstance:
    """Runs batches for one instance of a model in its own thread, off the event loop.

    A backend that releases the GIL (ONNX Runtime, PyTorch) runs N instances truly in
    parallel; each instance executes one batch at a time, so a scheduler that awaits
    `execute` knows the instance is free again when it returns.
    """

    def __init__(self, name: str, device: Device, backend_instance: BackendInstance) -> None:
        self.name = name
        self.device = device
        self._backend_instance = backend_instance
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def execute(
        self, inputs: Mapping[str, Array], output_names: Sequence[str]
    ) -> ExecutionResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, inputs, output_names)

    def _run(self, inputs: Mapping[str, Array], output_names: Sequence[str]) -> ExecutionResult:
        start = time.monotonic_ns()
        try:
            outputs = self._backend_instance.execute(inputs, output_names)
        except InferdError:
            raise
        except Exception as exc:
            raise ModelExecutionError(f"instance {self.name} failed: {exc}") from exc
        return ExecutionResult(outputs, start, time.monotonic_ns())

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._backend_instance.close()
