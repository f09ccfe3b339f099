"""The sequence batcher: Triton's scheduler for stateful models (`sequence_batching { }`).

Each request names its sequence (`sequence_id`, with `sequence_start` / `sequence_end`).
A starting sequence takes a batch slot on one instance (`sequence_slots.py`) and keeps it
until it ends or stays idle past `max_sequence_idle_microseconds`; later requests of it queue
in that slot, in order. Each instance runs a worker that forms its next batch from its
slots (`sequence_strategies.py`), adds the control inputs and implicit states
(`sequence_tensors.py`), executes it, stores the new states and answers each caller.

A sequence has at most one request executing, and the worker awaits each batch before
forming the next, so a sequence's requests run in the order they arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence as Seq
from typing import Any

import numpy as np

from inferd.core.errors import InferdError, Internal, InvalidArgument, Unavailable
from inferd.core.types import Array, InferRequest, Parameters, Timestamps
from inferd.instances.instance import ModelInstance
from inferd.scheduling.dynamic import BatchCallback, as_inferd_error, select_outputs
from inferd.scheduling.sequence_settings import CORRID, SequenceSettings
from inferd.scheduling.sequence_slots import Sequence, SequenceKey, SlotTable, Step
from inferd.scheduling.sequence_strategies import Choice, choose_rows
from inferd.scheduling.sequence_tensors import (
    Row,
    batch_inputs,
    batch_requests,
    keep_states,
    split_outputs,
)

logger = logging.getLogger(__name__)

_UINT64_MAX = 2**64 - 1


class SequenceBatcher:
    def __init__(
        self,
        instances: Seq[ModelInstance],
        settings: SequenceSettings,
        output_names: Seq[str],
        on_batch: BatchCallback | None = None,
    ) -> None:
        self._instances = list(instances)
        self._settings = settings
        self._output_names = list(output_names)
        self._on_batch = on_batch
        self._table = SlotTable(
            len(self._instances), settings.slots_per_instance, settings.max_backlog
        )
        self._initial = {s.input_name: s.initial for s in settings.states}
        corrid = next((c for c in settings.controls if c.kind == CORRID), None)
        # The number ids an integer CORRID control can carry: resolved once, checked per request.
        self._id_range = (1, _UINT64_MAX)
        if corrid is not None and corrid.dtype.kind in "iu":
            info = np.iinfo(corrid.dtype)
            self._id_range = (max(1, int(info.min)), int(info.max))
        self._waiters: list[asyncio.Future[None] | None] = [None] * len(self._instances)
        self._workers: list[asyncio.Task[None]] = []
        self._queued = 0
        self._stopping = False

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._worker(index), name=f"sequence:{instance.name}")
            for index, instance in enumerate(self._instances)
        ]

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
        step = Step(request, asyncio.get_running_loop().create_future(), start, end, now)
        sequence.steps.append(step)
        self._queued += 1
        if sequence.idle_timer is not None:
            sequence.idle_timer.cancel()
            sequence.idle_timer = None
        if sequence.instance is not None:
            self._wake(sequence.instance)
        return await step.future

    def _read_parameters(self, request: InferRequest) -> tuple[SequenceKey, bool, bool]:
        model = request.model_name
        parameters = request.parameters
        key = parameters.get("sequence_id", 0)
        if key == 0 or key == "":
            raise InvalidArgument(
                f"inference request to model '{model}' must specify a non-zero or non-empty "
                "correlation ID"
            )
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise InvalidArgument("request parameter 'sequence_id' must be an integer or a string")
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
        return key, _flag(parameters, "sequence_start"), _flag(parameters, "sequence_end")

    def _check_number_id(self, model: str, key: int) -> None:
        if self._settings.string_ids:
            raise InvalidArgument(f"model '{model}' takes string sequence ids; got {key}")
        low, limit = self._id_range
        if not low <= key <= limit:
            raise InvalidArgument(f"sequence_id {key} is out of range ({low} to {limit})")

    def _wake(self, index: int) -> None:
        waiter = self._waiters[index]
        self._waiters[index] = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def stop(self) -> None:
        self._stopping = True
        # Backlogged sequences would wait for slots that only end or idle out: fail them now.
        while self._table.backlog:
            for step in self._table.backlog.popleft().steps:
                self._queued -= 1
                step.fail(Unavailable("the model is being unloaded"))
        for index in range(len(self._instances)):
            self._wake(index)
        await asyncio.gather(*self._workers, return_exceptions=True)
        for slots in self._table.slots:
            for sequence in slots:
                if sequence is not None and sequence.idle_timer is not None:
                    sequence.idle_timer.cancel()

    # ---- one worker per instance -------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        instance = self._instances[index]
        while (rows := await self._next_batch(index)) is not None:
            try:
                await self._execute(instance, rows)
            except Exception as exc:  # e.g. a failing observer: the worker must survive it
                logger.exception("delivering a sequence batch of '%s' failed", instance.name)
                for row in rows:
                    if row is not None:
                        row[1].fail(Internal(f"delivering the batch failed: {exc}"))
            finally:
                for row in rows:
                    if row is not None:
                        row[0].running = False
                        self._settle(row[0])

    async def _next_batch(self, index: int) -> list[Row] | None:
        """The rows of the instance's next batch, or None once stopping with nothing left."""
        slots = self._table.slots[index]
        while True:
            choice: Choice = choose_rows(
                slots, self._settings, self._initial, time.monotonic_ns(), self._stopping
            )
            chosen, deadline = choice
            if chosen is not None:
                return [self._take(sequence) if sequence else None for sequence in chosen]
            if self._stopping:
                return None
            await self._sleep(index, deadline)

    def _take(self, sequence: Sequence) -> Row:
        step = sequence.steps.popleft()
        self._queued -= 1
        sequence.running = True
        if step.start:
            sequence.states.clear()  # a (re)start begins from the initial state
        return sequence, step

    async def _sleep(self, index: int, deadline_ns: int | None) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters[index] = waiter
        timer = None
        if deadline_ns is not None:
            delay = max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9)
            timer = loop.call_later(delay, self._wake, index)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()

    async def _execute(self, instance: ModelInstance, rows: list[Row]) -> None:
        settings = self._settings
        real = [row for row in rows if row is not None]
        compute = Timestamps(compute_start=time.monotonic_ns())
        try:
            result = await instance.execute(
                batch_inputs(rows, settings), self._batch_outputs(real), batch_requests(rows)
            )
            answers = split_outputs(result.outputs, rows, settings.batched)
        except Exception as exc:
            if isinstance(exc, InvalidArgument) and len(real) > 1:
                # The model refused one request's input: run them one by one, so only it fails
                # and every other sequence's state advances as if the batch had run.
                for alone in self._one_by_one(rows):
                    await self._execute(instance, alone)
                return
            error = as_inferd_error(exc)
            for _, step in real:
                step.fail(error)
            return
        compute.compute_input_end = result.compute_start_ns
        compute.compute_output_start = result.compute_end_ns
        compute.compute_end = time.monotonic_ns()
        if self._on_batch is not None:
            self._on_batch(len(real), compute)
        for (sequence, step), answer in zip(real, answers, strict=True):
            step.request.timestamps.copy_compute(compute)
            if isinstance(answer, InferdError):
                step.fail(answer)
                continue
            try:
                outputs = keep_states(sequence, answer, settings)
            except InferdError as exc:
                step.fail(exc)
                continue
            if not step.future.done():
                step.future.set_result(select_outputs(step.request, outputs))

    def _one_by_one(self, rows: list[Row]) -> list[list[Row]]:
        """Each real row as a batch of its own; in the direct strategy still in its slot's row
        (padding rows below it), so a model that keeps state per row sees it where it was."""
        direct = self._settings.strategy == "direct"
        return [
            [None] * index + [row] if direct else [row]
            for index, row in enumerate(rows)
            if row is not None
        ]

    def _batch_outputs(self, real: list[tuple[Sequence, Step]]) -> list[str]:
        names = self._output_names
        if all(step.request.outputs is not None for _, step in real):
            wanted = {o.name for _, step in real for o in step.request.outputs or ()}
            names = [name for name in names if name in wanted]
        return names + list(self._settings.state_outputs)

    # ---- sequence lifetimes ------------------------------------------------------------------

    def _settle(self, sequence: Sequence) -> None:
        """After a step ran: free the slot of an ended sequence, or start its idle clock."""
        if not sequence.drained():
            return
        if sequence.ended:
            self._release(sequence)
        elif not self._stopping:
            loop = asyncio.get_running_loop()
            sequence.idle_timer = loop.call_later(
                self._settings.idle_ns / 1e9, self._expire, sequence
            )

    def _expire(self, sequence: Sequence) -> None:
        sequence.idle_timer = None
        if not sequence.drained() or sequence.ended:
            return
        logger.info("sequence %s idled out; its slot and state are released", sequence.key)
        self._table.close(sequence)
        self._release(sequence)

    def _release(self, sequence: Sequence) -> None:
        successor = self._table.release(sequence)
        if successor is not None and successor.instance is not None:
            self._wake(successor.instance)


def _flag(parameters: Parameters, name: str) -> bool:
    value: Any = parameters.get(name, False)
    if not isinstance(value, bool):
        raise InvalidArgument(f"request parameter '{name}' must be a boolean")
    return value
