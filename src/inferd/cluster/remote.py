"""A model instance on another node: the scheduler's `Instance`, backed by an `InstanceHost`
actor.

One actor call per formed batch: the inputs go by value (Ray moves large arrays through its
object store) and the outputs come back by value. Two batches may be in flight at once, so the
next batch crosses the network while the current one runs.

When its host dies (its process killed, its node lost), Ray restarts it; the batches it held
are not re-run by Ray (`max_task_retries=0`: a stateful model must not see a step twice).
Instead, a batch of a stateless model is sent once more to another instance of the version;
a sequence model's batch fails as UNAVAILABLE, since the sequence's state went with the host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from inferd.backends.base import BatchRequest, Device
from inferd.core.errors import InferdError, ModelExecutionError, Unavailable
from inferd.core.types import Array
from inferd.instances.instance import ExecutionResult, Instance

logger = logging.getLogger(__name__)

# Batches a scheduler may hand one remote instance at once: one running, one in transit.
PIPELINE_DEPTH = 2


class RemoteInstance:
    pipeline_depth = PIPELINE_DEPTH

    def __init__(self, name: str, device: Device, host: Any, node_id: str, peers: Peers) -> None:
        self.name = name
        self.device = device
        self.node_id = node_id
        self.host = host  # the InstanceHost actor's handle
        self._peers = peers

    async def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> ExecutionResult:
        try:
            return await self.call(inputs, output_names, requests)
        except (RayActorError, ActorUnavailableError) as exc:
            return await self._peers.recover(self, exc, inputs, output_names, requests)

    async def call(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> ExecutionResult:
        """One run on this instance's host, with no recovery."""
        try:
            outputs, compute_ns = await self.host.execute.remote(
                dict(inputs), list(output_names), [_portable(request) for request in requests]
            )
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, InferdError):
                raise cause from None
            raise ModelExecutionError(f"instance {self.name} failed: {cause}") from None
        end = time.monotonic_ns()
        # The host's clock is not this one: its compute time, ending now, is what is known.
        return ExecutionResult(outputs, end - compute_ns, end)

    def close(self) -> None:
        import ray

        ray.kill(self.host, no_restart=True)


class Peers:
    """The instances of one model version, for a batch whose host died to go elsewhere."""

    def __init__(self, model: str, stateful: bool) -> None:
        self._model = model
        self._stateful = stateful
        self.instances: list[Instance] = []
        self._next = 0

    async def recover(
        self,
        lost: RemoteInstance,
        exc: Exception,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> ExecutionResult:
        logger.warning("model '%s': instance %s was lost: %s", self._model, lost.name, exc)
        if self._stateful:
            raise Unavailable(
                f"sequence lost: instance {lost.name} of model '{self._model}' stopped while "
                "running it (its host process or node went away); start the sequence again"
            ) from None
        other = self._pick(lost)
        if other is None:
            raise Unavailable(
                f"instance {lost.name} of model '{self._model}' stopped while running the "
                "request, and no other instance is there to retry it"
            ) from None
        try:
            if isinstance(other, RemoteInstance):
                return await other.call(inputs, output_names, requests)
            return await other.execute(inputs, output_names, requests)
        except (RayActorError, ActorUnavailableError) as again:
            raise Unavailable(
                f"instances {lost.name} and {other.name} of model '{self._model}' stopped "
                f"while running the request ({again})"
            ) from None

    def _pick(self, lost: Instance) -> Instance | None:
        """The next other instance, round robin."""
        others = [instance for instance in self.instances if instance is not lost]
        if not others:
            return None
        self._next = (self._next + 1) % len(others)
        return others[self._next]


def _portable(request: BatchRequest) -> BatchRequest:
    """What a host needs of a request (its rows, id and parameters), without what only lives
    in this process (the request it came from, a response channel)."""
    return BatchRequest(request.start, request.end, request.id, request.parameters)
