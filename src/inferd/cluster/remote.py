"""A model instance on another node: the scheduler's `Instance`, backed by an `InstanceHost`
actor.

One actor call per formed batch: the inputs go by value (Ray moves large arrays through its
object store) and the outputs come back by value, both packed so that Ray need not pickle
small ones (`wire.py`). Two batches may be in flight at once, so the next batch crosses the
network while the current one runs.

When its host dies (its process killed, its node lost), Ray restarts it; the batches it held
are not re-run by Ray (`max_task_retries=0`: a stateful model must not see a step twice).
Instead, a batch of a stateless model is sent once more to another instance of the version;
a sequence model's batch fails as UNAVAILABLE, since the sequence's state went with the host.
A host that died between batches is known by its incarnation, which each answer carries: for
a sequence model the first batch after the restart fails the same way.

A sequence model's implicit states live in its hosts when they can (`holds_states`; see
`scheduling/held_states.py`): a batch then carries each row's slot instead of its state, and
a restarted host, which holds none, refuses a continuing row as a lost sequence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from inferd.backends.base import BatchRequest, Device
from inferd.cluster.telemetry import BatchCounters, ClusterTelemetry
from inferd.cluster.wire import pack_batch, unpack_answer
from inferd.core.errors import InferdError, InstanceLost, ModelExecutionError, Unavailable
from inferd.core.running_loop import running_loop
from inferd.core.types import Array
from inferd.instances.instance import ExecutionResult, Instance

logger = logging.getLogger(__name__)

# Batches a scheduler may hand one remote instance at once: one running, one in transit.
PIPELINE_DEPTH = 2
# How long a batch waits for a restarting host that it never reached, and how often it asks.
RESTART_WAIT_S = 30.0
RESTART_POLL_S = 0.1


class RemoteInstance:
    pipeline_depth = PIPELINE_DEPTH

    def __init__(
        self,
        name: str,
        device: Device,
        host: Any,
        peers: Peers,
        counters: BatchCounters,
        telemetry: ClusterTelemetry,
        holds_states: bool = False,
    ) -> None:
        self.name = name
        self.device = device
        self.host = host  # the InstanceHost actor's handle
        self.counters = counters
        self.incarnation = ""  # the host's start that serves now (see `InstanceHost`)
        self.holds_states = holds_states  # its sequences' implicit states live in its host
        self._peers = peers
        self._telemetry = telemetry
        telemetry.watch(counters, host)

    async def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        started: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        if started is not None:
            # When its host starts the batch is not known here: once on its way (the
            # actor call is made before this call first waits), it counts as started.
            running_loop().call_soon(started)
        try:
            return await self.call(inputs, output_names, requests)
        except (RayActorError, ActorUnavailableError) as exc:
            return await self._peers.recover(self, exc, inputs, output_names, requests)

    async def call_when_back(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> ExecutionResult:
        """`call`, once the host Ray is restarting is up again (within `RESTART_WAIT_S`)."""
        deadline = time.monotonic() + RESTART_WAIT_S
        while True:
            try:
                return await self.call(inputs, output_names, requests)
            except (RayActorError, ActorUnavailableError) as exc:
                if not _restarting(exc) or time.monotonic() > deadline:
                    raise Unavailable(
                        f"instance {self.name} stopped and is not back yet ({exc})"
                    ) from None
            await asyncio.sleep(RESTART_POLL_S)

    async def call(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> ExecutionResult:
        """One run on this instance's host, with no recovery."""
        start = time.monotonic_ns()
        try:
            answer = await self.host.execute.remote(pack_batch(inputs, output_names, requests))
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, InstanceLost):  # the host holds no state of a sequence
                self.incarnation = ""  # reported now, so its restart is no news
                raise InstanceLost(self._peers.lost_sequences(self)) from None
            if isinstance(cause, InferdError):
                raise cause from None
            raise ModelExecutionError(f"instance {self.name} failed: {cause}") from None
        end = time.monotonic_ns()
        outputs, compute_ns, incarnation = unpack_answer(answer)
        if incarnation != self.incarnation:
            known, self.incarnation = self.incarnation, incarnation
            if known:  # "" once its loss was reported: the restart is no news then
                self._peers.restarted(self)
        counters = self.counters
        counters.executions += 1
        counters.compute_ns += compute_ns
        counters.round_trip_ns += end - start
        # The host's clock is not this one: its compute time, ending now, is what is known.
        return ExecutionResult(outputs, end - compute_ns, end)

    def forget_state(self, slot: int) -> None:
        """Have the host drop the state it holds for `slot`. Ray runs one caller's calls to
        an actor in the order they were made, so before any later batch."""
        if self.incarnation:  # else the host lost it with the rest
            # Its answer is not awaited; a future reads it, so an error (the host died
            # meanwhile) is not logged as unhandled.
            self.host.forget.remote([slot]).future()

    def close(self) -> None:
        import ray

        self._telemetry.forget(self.counters)
        ray.kill(self.host, no_restart=True)


class Peers:
    """The instances of one model version, for a batch whose host died to go elsewhere."""

    def __init__(self, model: str, stateful: bool) -> None:
        self._model = model
        self._stateful = stateful
        self.instances: list[Instance] = []
        self._next = 0

    def restarted(self, instance: RemoteInstance) -> None:
        """A host came back from a restart that no batch saw (it died between batches): for
        a sequence model, what it held of its sequences is gone."""
        logger.warning("model '%s': instance %s was restarted", self._model, instance.name)
        if self._stateful:
            raise InstanceLost(self.lost_sequences(instance))

    async def recover(
        self,
        lost: RemoteInstance,
        exc: Exception,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> ExecutionResult:
        """Answer a batch whose host failed it: from another instance (stateless), from the
        host once it is back (a batch that never reached it), or as lost sequences."""
        undelivered = _restarting(exc)
        if not undelivered:
            logger.warning("model '%s': instance %s was lost: %s", self._model, lost.name, exc)
            lost.incarnation = ""  # reported here, so its restart is no news
            if self._stateful:
                raise InstanceLost(self.lost_sequences(lost)) from None
        elif self._stateful:
            # Its restart is news to the first answer, which says what the host held is gone.
            return await lost.call_when_back(inputs, output_names, requests)
        other = self._pick(lost)
        try:
            if isinstance(other, RemoteInstance):
                return await other.call(inputs, output_names, requests)
            if other is not None:
                return await other.execute(inputs, output_names, requests)
        except (RayActorError, ActorUnavailableError):
            pass
        return await lost.call_when_back(inputs, output_names, requests)

    def lost_sequences(self, lost: Instance) -> str:
        return (
            f"sequence lost: instance {lost.name} of model '{self._model}' stopped (its host "
            "process or node went away) with the sequences it held; start them again"
        )

    def _pick(self, lost: Instance) -> Instance | None:
        """The next other instance, round robin."""
        others = [instance for instance in self.instances if instance is not lost]
        if not others:
            return None
        self._next = (self._next + 1) % len(others)
        return others[self._next]


def _restarting(exc: Exception) -> bool:
    """Whether Ray refused the call because the host is restarting: the batch never reached
    a host (Ray says so only in the message)."""
    return isinstance(exc, ActorUnavailableError) and "restarting" in str(exc)
