"""The sequence batcher: Triton's scheduler for stateful models (`sequence_batching { }`).

Each request names its sequence (`sequence_id`, with `sequence_start` / `sequence_end`).
A starting sequence takes a batch slot on one instance (`sequence_slots.py`) and keeps it
until it ends or stays idle past `max_sequence_idle_microseconds`; later requests of it queue
in that slot, in order. Each instance runs a worker that forms its next batch from its
slots (`sequence_strategies.py`), adds the control inputs and implicit states
(`sequence_tensors.py`), executes it with the shared batch core (`batch.py`), stores the
new states and answers each caller.

A sequence has at most one request executing, and the worker awaits each batch before
forming the next, so a sequence's requests run in the order they arrived. A request whose
client goes away before it runs leaves its slot's queue and never runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import numpy as np

from inferd.core.errors import InstanceLost, InvalidArgument, Unavailable
from inferd.core.running_loop import running_loop
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import Instance
from inferd.scheduling.batch import BatchCallback, BatchRunner, fail_all, fail_undelivered
from inferd.scheduling.delay_hook import POLL_NS, DelayGate, delay_gate
from inferd.scheduling.held_states import HeldStateBatches, state_holder
from inferd.scheduling.sequence_settings import CORRID, SequenceSettings
from inferd.scheduling.sequence_slots import SequenceKey, SequenceRecord, SequenceStep
from inferd.scheduling.sequence_strategies import Choice, choose_rows, ready_count
from inferd.scheduling.sequence_tensors import Row, SequenceBatches
from inferd.scheduling.slotted import SlottedScheduler

logger = logging.getLogger(__name__)

_UINT64_MAX = 2**64 - 1


class SequenceBatcher(SlottedScheduler):
    """The scheduler of a stateful model: requests grouped by sequence, each sequence in a batch
    slot of one instance from its start to its end, batched with other sequences' next steps
    and fed the control inputs and the implicit state the server keeps for it."""

    def __init__(
        self,
        instances: Sequence[Instance],
        settings: SequenceSettings,
        output_names: Sequence[str],
        on_batch: BatchCallback | None = None,
    ) -> None:
        kind = SequenceBatches(settings, list(output_names))
        super().__init__(instances, settings, kind, on_batch, "sequence")
        corrid = next((c for c in settings.controls if c.kind == CORRID), None)
        # The number ids an integer CORRID control can carry: resolved once, checked per request.
        self._id_range = (1, _UINT64_MAX)
        if corrid is not None and corrid.dtype.kind in "iu":
            info = np.iinfo(corrid.dtype)
            self._id_range = (max(1, int(info.min)), int(info.max))
        self._queued = 0
        self._delays = self._delay_gates()
        # Instances that keep their sequences' states themselves (`held_states.py`) get
        # batches without them.
        self._holders = [state_holder(instance) for instance in self._instances]
        self._runners = [self._runner] * len(self._instances)
        if any(self._holders):
            held = BatchRunner(HeldStateBatches(settings, list(output_names)), on_batch)
            self._runners = [self._runner if h is None else held for h in self._holders]

    def _delay_gates(self) -> list[DelayGate | None]:
        """Triton's test hook (`delay_hook.py`), per instance worker. Direct: one gate for all,
        counting the requests in every slot (and the backlog's). Oldest: each instance's own
        batcher counts the sequences ready on it, as Triton's per-instance dynamic batcher does."""
        names = [instance.name for instance in self._instances]
        if self._settings.strategy == "direct":
            shared = delay_gate(f"scheduler threads {', '.join(names)}", with_backlog=True)
            return [shared] * len(names)
        return [delay_gate(f"scheduler thread {name}") for name in names]

    def pending(self) -> int:
        return self._queued

    async def submit(self, request: InferRequest) -> dict[str, Array]:
        key, start, end = self._read_parameters(request)
        if self._stopping:
            raise Unavailable(f"model '{request.model_name}' is being unloaded")
        table = self._table
        sequence = table.live.get(key)
        if sequence is None:
            if not start:
                raise InvalidArgument(
                    f"inference request for sequence {key} to model '{request.model_name}' "
                    "must specify the START flag on the first request of the sequence"
                )
            if table.backlog_full():
                raise Unavailable(
                    f"every sequence slot of model '{request.model_name}' is taken and "
                    f"{len(table.backlog)} sequences already wait for one; retry later"
                )
            sequence = table.open(key)
        elif start:
            # Triton's behaviour: the new sequence takes over the old one's slot; its START
            # resets the state when it runs.
            logger.warning(
                "sequence %s for model '%s' has a conflict: the previous sequence did not end "
                "before this sequence start, so it is terminated early",
                key,
                request.model_name,
            )
        if end:
            table.close(sequence)
        now = time.monotonic_ns()
        request.timestamps.queued = now
        future = running_loop().create_future()
        step = SequenceStep(request, future, now, 1, sequence, start, end)
        sequence.steps.append(step)
        self._queued += 1
        if sequence.idle_timer is not None:
            sequence.idle_timer.cancel()
            sequence.idle_timer = None
        if sequence.instance is not None:
            self._wakeups[sequence.instance].wake()
        try:
            return await step.future
        except asyncio.CancelledError:  # its client went away: it leaves its queue now
            self._drop(step)
            raise

    def _read_parameters(self, request: InferRequest) -> tuple[SequenceKey, bool, bool]:
        model = request.model_name
        parameters = request.parameters
        key = parameters.get("sequence_id", 0)
        if key == 0 or key == "":
            raise InvalidArgument(
                f"inference request to model '{model}' must specify a non-zero or non-empty "
                "correlation ID"
            )
        # Its kind (an int or a str, not a bool) was checked with every request's
        # (`request_parameters.check_reserved`).
        if isinstance(key, int):
            self._check_number_id(model, key)
        elif self._settings.string_ids is False:
            raise InvalidArgument(
                f"model '{model}' takes unsigned integer sequence ids; got the string '{key}'"
            )
        if self._settings.batched and request.batch_size() != 1:
            raise InvalidArgument(
                f"inference request to model '{model}' must specify batch-size 1 due to "
                "requirements of sequence batcher"
            )
        start, end = parameters.get("sequence_start", False), parameters.get("sequence_end", False)
        return key, start, end

    def _check_number_id(self, model: str, key: int) -> None:
        if self._settings.string_ids:
            raise InvalidArgument(f"model '{model}' takes string sequence ids; got {key}")
        low, limit = self._id_range
        if not low <= key <= limit:
            raise InvalidArgument(f"sequence_id {key} is out of range ({low} to {limit})")

    async def stop(self) -> None:
        self._stopping = True
        # Backlogged sequences would wait for slots that only end or idle out: fail them now.
        while self._table.backlog:
            for step in self._table.backlog.popleft().steps:
                self._queued -= 1
                step.fail(Unavailable("the model is being unloaded"))
        for wakeup in self._wakeups:
            wakeup.wake()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for slots in self._table.slots:
            for sequence in slots:
                if sequence is not None and sequence.idle_timer is not None:
                    sequence.idle_timer.cancel()

    # ---- one worker per instance -------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        instance = self._instances[index]
        while (rows := await self._next_batch(index)) is not None:
            steps = [row for row in rows if row is not None]
            try:
                deliver = await self._runners[index].run(instance, rows)
                deliver()
            except InstanceLost as exc:
                fail_all(steps, exc)
                self._lose_sequences(index, exc)
            except Exception as exc:
                fail_undelivered(instance.name, steps, exc)
            finally:
                for step in steps:
                    step.sequence.running = False
                    self._settle(step.sequence, forgotten=step.end and _answered(step))

    async def _next_batch(self, index: int) -> list[Row] | None:
        """The rows of the instance's next batch, or None once stopping with nothing left."""
        slots = self._table.slots[index]
        while True:
            gate = self._delays[index]
            if gate is not None:
                if gate.holds(*self._delay_counts(index)) and not self._stopping:
                    await self._wakeups[index].sleep(time.monotonic_ns() + POLL_NS)
                    continue
                self._delays[index] = None
            choice: Choice = choose_rows(
                slots, self._settings, self._initial, time.monotonic_ns(), self._stopping
            )
            chosen, deadline = choice
            if chosen is not None:
                return [self._take(sequence) if sequence else None for sequence in chosen]
            if self._stopping:
                return None
            await self._wakeups[index].sleep(deadline)

    def _delay_counts(self, index: int) -> tuple[int, int]:
        """What a delay gate counts: requests queued in slots, and in the backlog."""
        if self._settings.strategy != "direct":
            return ready_count(self._table.slots[index]), 0
        backlogged = sum(len(sequence.steps) for sequence in self._table.backlog)
        return self._queued - backlogged, backlogged

    def _take(self, sequence: SequenceRecord) -> SequenceStep:
        step = sequence.steps.popleft()
        self._queued -= 1
        sequence.running = True
        if step.start:
            sequence.states.clear()  # a (re)start begins from the initial state
        return step

    # ---- sequence lifetimes ------------------------------------------------------------------

    def _drop(self, step: SequenceStep) -> None:
        """A cancelled step that has not run never will (one already running finishes)."""
        sequence = step.sequence
        if step not in sequence.steps:
            return
        sequence.steps.remove(step)
        self._queued -= 1
        if sequence.instance is not None:
            self._settle(sequence)
        elif not sequence.steps:  # it never got a slot, and nothing of it is left to run
            self._table.backlog.remove(sequence)
            self._table.close(sequence)

    def _lose_sequences(self, index: int, error: InstanceLost) -> None:
        """The instance's state went away: every sequence that had a slot there ends, its
        waiting steps failing with `error`, so that a later step without START gets the
        unknown-sequence error rather than an answer from a fresh state."""
        for sequence in [s for s in self._table.slots[index] if s is not None]:
            if sequence.idle_timer is not None:
                sequence.idle_timer.cancel()
                sequence.idle_timer = None
            self._queued -= len(sequence.steps)
            fail_all(list(sequence.steps), error)
            sequence.steps.clear()
            self._table.close(sequence)
            if not sequence.running:
                self._release(sequence, forgotten=True)
            logger.warning("sequence %s was lost with its instance", sequence.key)

    def _settle(self, sequence: SequenceRecord, forgotten: bool = False) -> None:
        """After a step ran: free the slot of an ended sequence, or start its idle clock.
        `forgotten`: the step was its END and ran, so an instance that held its state
        dropped it already."""
        if not sequence.drained():
            return
        if sequence.ended:
            self._release(sequence, forgotten)
        elif not self._stopping:
            loop = running_loop()
            sequence.idle_timer = loop.call_later(
                self._settings.idle_ns / 1e9, self._expire, sequence
            )

    def _expire(self, sequence: SequenceRecord) -> None:
        sequence.idle_timer = None
        if not sequence.drained() or sequence.ended:
            return
        logger.info("sequence %s idled out; its slot and state are released", sequence.key)
        self._table.close(sequence)
        self._release(sequence)

    def _release(self, sequence: SequenceRecord, forgotten: bool = False) -> None:
        """Free the slot of a closed sequence; an instance that holds its state drops it
        (unless it did already: `forgotten`)."""
        if sequence.instance is not None and not forgotten:
            holder = self._holders[sequence.instance]
            if holder is not None:
                holder.forget_state(sequence.index)
        super()._release(sequence)


def _answered(step: SequenceStep) -> bool:
    future = step.future
    return future.done() and not future.cancelled() and future.exception() is None
