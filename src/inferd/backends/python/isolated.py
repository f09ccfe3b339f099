"""A Python model instance in a worker process of its own (the server's side).

A worker that dies or overruns `execute_timeout_s` fails only the batch it was running; it
is replaced (and initialized again) when the instance's next batch arrives. A decoupled
model's worker is a `StreamingWorker` (`streaming_worker.py`), the others a `Worker`
(`isolated_worker.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.backends.python.isolated_worker import Worker, WorkerLost
from inferd.backends.python.protocol import WorkerSetup
from inferd.backends.python.streaming_worker import StreamingWorker
from inferd.core.calls import ModelCalls
from inferd.core.errors import InferdError, Unavailable
from inferd.core.types import Array

logger = logging.getLogger(__name__)


class IsolatedInstance:
    def __init__(
        self,
        setup: WorkerSetup,
        execute_timeout_s: float | None,
        threads: int,
        calls: ModelCalls | None = None,
    ) -> None:
        self._setup = setup
        self._timeout = execute_timeout_s
        self._threads = threads
        self._calls = calls
        self._kind = StreamingWorker if setup.decoupled else Worker
        try:
            self._worker: Worker | None = self._kind(setup, threads, calls)
        except WorkerLost as lost:
            name = setup.context.instance_name
            raise Unavailable(f"the worker of instance {name} {lost} while starting") from None

    @property
    def pid(self) -> int | None:
        """The running worker's process id (None between a crash and the next batch)."""
        return self._worker.pid if self._worker is not None else None

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> BatchOutputs:
        worker = self._worker or self._restart()
        try:
            return worker.run(inputs, output_names, requests, self._timeout)
        except WorkerLost as lost:
            self._worker = None
            worker.kill()
            context = self._setup.context
            message = (
                f"instance {context.instance_name} of model '{context.model_name}' {lost}; "
                "restarting"
            )
            logger.error("%s", message)
            raise Unavailable(message) from None

    def _restart(self) -> Worker:
        try:
            self._worker = self._kind(self._setup, self._threads, self._calls)
        except (InferdError, WorkerLost) as exc:
            name = self._setup.context.instance_name
            raise Unavailable(f"instance {name} could not be restarted: {exc}") from exc
        return self._worker

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
