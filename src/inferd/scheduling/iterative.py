"""The iterative sequence scheduler: continuous (iteration-level) batching
(`sequence_batching { iterative_sequence: true }`).

Each request is a sequence of its own, named by its `sequence_id` or, without one, by a
fresh correlation id (its first step carries the START flag, as in Triton). It takes a
batch slot (`sequence_slots.py`; beyond `max_batch_size` running requests per instance it
waits in the backlog) and is run step by step: each instance's worker runs one step of
every request in its slots at once (the running batch), with the control inputs and
implicit states of the sequence batcher (`sequence_tensors.py`) and the shared batch core
(`batch.py`). After a step the model has either finished a request (its answer is the
request's) or handed it back (`rescheduled`): it then runs again in the next step, while
requests that finished free their slots for the backlog between two steps.

A request handed back waits at most `max_sequence_idle_microseconds` for its next step;
a cancelled one is dropped before its next step and its slot freed. A request whose reader is
behind (`ResponseChannel.behind`) runs no step until the reader catches up, and its idle
clock waits with it. Requests beyond the running batch wait in the backlog, in the order of
the model's admission settings (`admission.py`: the dynamic batcher's priorities, queue
policy and timeouts). Unloading the model ends every request it holds with UNAVAILABLE
and cancels it for the model (`IterativeRun.end`), so that a step running then, which the
unload waits for, may stop early; none follows.

A decoupled model's responses sent during a step are held in their channels
(`ResponseChannel.hold`) until the next step has started on the instance (`started`, which its
thread calls as it starts the model; with no next step ready, until the worker waits for
one): the model then computes while the event loop encodes and writes them.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Sequence

from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.responses import ResponseChannel
from inferd.core.running_loop import running_loop
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import Instance
from inferd.scheduling.batch import Batch, BatchCallback, fail_undelivered
from inferd.scheduling.dynamic_settings import BatchingSettings
from inferd.scheduling.iterative_runs import IterativeRun, IterativeSteps, step_batch
from inferd.scheduling.queue import PriorityQueue, Queued
from inferd.scheduling.sequence_settings import SequenceSettings
from inferd.scheduling.sequence_slots import SequenceKey, SequenceRecord, SequenceStep
from inferd.scheduling.slotted import SlottedScheduler


class IterativeBatcher(SlottedScheduler):
    """The scheduler of an iterative sequence model: a running batch per instance that
    requests join and leave between steps."""

    def __init__(
        self,
        instances: Sequence[Instance],
        settings: SequenceSettings,
        output_names: Sequence[str],
        on_batch: BatchCallback | None = None,
    ) -> None:
        super().__init__(
            instances, settings, IterativeSteps(settings, list(output_names)), on_batch, "iterative"
        )
        self._running: dict[SequenceKey, IterativeRun] = {}  # backlog and slots
        self._admission = settings.admission or BatchingSettings(settings.max_batch_size, True)
        self._backlog = PriorityQueue(self._admission)
        self._fresh_ids = itertools.count(1)
        # Per instance: its worker's last look at its slots took every step waiting there, and
        # no step was queued there since (`_queue_start`): see `_again`.
        self._took_all = [False] * len(self._instances)

    def pending(self) -> int:
        """Requests waiting for a slot or for their next step."""
        return sum(1 for run in self._running.values() if not run.sequence.running)

    async def submit(self, request: InferRequest) -> dict[str, Array]:
        model = request.model_name
        if self._stopping:
            raise Unavailable(f"model '{model}' is being unloaded")
        if self._settings.batched and request.batch_size() != 1:
            raise InvalidArgument(
                f"inference request to model '{model}' must specify batch-size 1: each "
                "request of an iterative sequence model is one row of the running batch"
            )
        # Bad `priority` / `timeout` parameters are refused whether or not a slot is free.
        level = self._admission.level_index(request.parameters)
        timeout_ns = self._backlog.policy(level).timeout_ns(request.parameters)
        key = self._key(request)
        # As in Triton: the request is named by its correlation id and starts a sequence.
        request.parameters["sequence_id"] = key
        request.parameters["sequence_start"] = True
        request.timestamps.queued = now = time.monotonic_ns()
        run = IterativeRun(request, SequenceRecord(key), running_loop().create_future())
        run.shapes = tuple((name, array.shape) for name, array in request.inputs.items())
        if len(self._backlog) or not self._table.place(run.sequence):
            self._enqueue(run, level, timeout_ns, now)
        self._running[key] = run
        if request.responses is not None:
            request.responses.on_room(functools.partial(self._reader_caught_up, run))
        if run.queued is None:
            self._queue_start(run)
        try:
            return await run.result
        finally:  # failed in the backlog (timed out) or its caller went away
            if not run.sequence.running:  # else its step ends first, then it is dropped
                self._finish(run)

    def _reader_caught_up(self, run: IterativeRun) -> None:
        """The wait was its reader's, not the request's: its idle clock starts now."""
        sequence = run.sequence
        if sequence.steps:
            sequence.steps[0].enqueued_ns = time.monotonic_ns()
        if sequence.instance is not None:
            self._wakeups[sequence.instance].wake()

    def _enqueue(self, run: IterativeRun, level: int, timeout_ns: int, now: int) -> None:
        """Into the backlog, by priority; raises `Unavailable` when it is full."""
        limit = self._settings.max_backlog
        if limit and len(self._backlog) >= limit:
            raise Unavailable(
                f"every slot of the running batch of model '{run.request.model_name}' is taken "
                f"and {len(self._backlog)} requests already wait for one; retry later"
            )
        queued = Queued(run.request, run.result, now, 1, (), level)
        self._backlog.enqueue(queued, timeout_ns)
        run.queued = queued

    def _admit(self) -> None:
        """A slot was freed: the backlog's next request (by priority) takes it."""
        queued = None if self._stopping else self._backlog.pop(time.monotonic_ns())
        if queued is None:
            return
        run = self._running[queued.request.parameters["sequence_id"]]
        run.queued = None
        self._table.place(run.sequence)
        self._queue_start(run)

    def _key(self, request: InferRequest) -> SequenceKey:
        # An int or a str: its kind was checked with the request's (`check_reserved`).
        key: SequenceKey = request.parameters.get("sequence_id", 0)
        if key == 0 or key == "":
            while True:  # a fresh id, of the kind the model's CORRID takes
                fresh = next(self._fresh_ids)
                key = str(fresh) if self._settings.string_ids else fresh
                if key not in self._running:
                    return key
        if key in self._running:
            raise InvalidArgument(
                f"sequence {key} of model '{request.model_name}' is still running: each "
                "request of an iterative sequence model is a sequence of its own"
            )
        return key

    def _queue_start(self, run: IterativeRun) -> None:
        """Queue the request's first step (its later ones: `_renew`)."""
        step = SequenceStep(
            run.request,
            running_loop().create_future(),
            time.monotonic_ns(),
            1,
            run.sequence,
            True,
            False,
        )
        run.sequence.steps.append(step)
        if run.sequence.instance is not None:
            self._took_all[run.sequence.instance] = False
            self._wakeups[run.sequence.instance].wake()

    async def stop(self) -> None:
        self._stopping = True
        for run in list(self._running.values()):
            run.end(Unavailable("the model is being unloaded"))
            if not run.sequence.running:
                self._finish(run)
        for wakeup in self._wakeups:
            wakeup.wake()
        await asyncio.gather(*self._workers, return_exceptions=True)

    # ---- one worker per instance -------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        instance = self._instances[index]
        held: list[ResponseChannel] = []  # the channels of the step before, until released
        batch: Batch[SequenceStep] | None = None  # the step before's
        steps = await self._next_step(index, held)
        while steps is not None:
            channels = [c for step in steps if (c := step.request.responses) is not None]
            for channel in channels:
                channel.hold()
            # The step before's responses reach their readers once this step has started on
            # the instance, not before: so the model runs while the loop encodes and writes
            # them.
            release = functools.partial(_release, held)
            batch = step_batch(steps, batch)
            try:
                deliver = await self._runner.run_batch(instance, batch, release)
                deliver()
            except Exception as exc:
                fail_undelivered(instance.name, steps, exc)
            finally:
                release()  # the step never started (cancelled), or the instance cannot tell
            held = channels
            now = time.monotonic_ns()
            went_on = self._after(steps, now)
            steps = self._again(index, steps, now) if went_on else None
            if steps is None:
                steps = await self._next_step(index, held)

    async def _next_step(
        self, index: int, held: list[ResponseChannel]
    ) -> list[SequenceStep] | None:
        """One step of the running requests in the instance's slots that batch together, or
        None once stopping with nothing left. The channels `held` are released before it
        waits for a step: no step runs then for their responses to overlap, and a request
        whose reader is behind waits for the reader."""
        while True:
            self._took_all[index] = True  # until a step waiting there is left (or queued)
            waiting = self._waiting(index)
            if waiting:
                # The request that waited longest, and every one whose shapes match its.
                first = min(waiting, key=_enqueued)
                if not self._initial:
                    taken = [self._take(r.sequence) for r in waiting if r.shapes == first.shapes]
                else:
                    shapes = first.sequence.head_shapes(self._initial)
                    taken = [
                        self._take(run.sequence)
                        for run in waiting
                        if run.sequence.head_shapes(self._initial) == shapes
                    ]
                if len(taken) < len(waiting):
                    self._took_all[index] = False
                return taken
            _release(held)
            if self._stopping:
                return None
            await self._wakeups[index].sleep(None)

    def _waiting(self, index: int) -> list[IterativeRun]:
        """The requests in the instance's slots with a step to run; drops the abandoned and
        those that idled out since their last step."""
        now = time.monotonic_ns()
        idle_ns = self._settings.idle_ns
        waiting = []
        for sequence in list(self._table.slots[index]):
            if sequence is None or not sequence.steps:
                continue
            run = self._running[sequence.key]
            abandoned = run.abandoned()
            if not abandoned:
                if run.behind():
                    self._took_all[index] = False
                    continue  # until its reader catches up
                step = sequence.steps[0]
                if not step.start and now - step.enqueued_ns > idle_ns:
                    run.result.set_exception(
                        Unavailable(
                            f"sequence {sequence.key} of model '{run.request.model_name}' "
                            "idled out between two steps (max_sequence_idle_microseconds)"
                        )
                    )
                    abandoned = True
            if abandoned:
                self._finish(run)
                continue
            waiting.append(run)
        return waiting

    def _again(self, index: int, steps: list[SequenceStep], now: int) -> list[SequenceStep] | None:
        """The next step when it is sure to be the same requests' as the step of `steps`, each
        of which went on (its next step queued at `now`), without a look at every slot of the
        instance: the last look took every step waiting there and none was queued since, so
        theirs are the only ones; none of them was dropped since (no await came between), and
        without implicit states their shapes are as they were. Else (one of them now waits
        for its reader or idled out, or may not batch with the others) None: `_next_step`
        looks."""
        if not self._took_all[index] or self._initial:
            return None
        if time.monotonic_ns() - now > self._settings.idle_ns:
            return None
        running = self._running
        if any(running[step.sequence.key].behind() for step in steps):
            return None
        return [self._take(step.sequence) for step in steps]

    def _take(self, sequence: SequenceRecord) -> SequenceStep:
        step = sequence.steps.popleft()
        sequence.running = True
        if step.start:
            sequence.states.clear()
        else:
            step.request.parameters["sequence_start"] = False
        return step

    def _after(self, steps: list[SequenceStep], now: int) -> bool:
        """A step of `steps` ran (it ended at `now`): queue each request's next step, or
        answer its caller. True when every one went on (its next step queued)."""
        running = self._running
        went_on = True
        for step in steps:
            sequence = step.sequence
            sequence.running = False
            run = running[sequence.key]
            if run.abandoned():
                self._finish(run)
            elif (error := step.future.exception()) is not None:
                run.result.set_exception(error)
                self._finish(run)
            elif step.rescheduled and not self._stopping and not run.answered():
                _renew(step, now)
                continue
            else:
                run.result.set_result(step.future.result())
                self._finish(run)
            went_on = False
        return went_on

    def _finish(self, run: IterativeRun) -> None:
        """The request is done with: free its slot for the backlog."""
        sequence = run.sequence
        if self._running.get(sequence.key) is not run:
            return
        del self._running[sequence.key]
        if not run.result.done():  # its stream was cancelled: so is the request
            run.result.cancel()
        if run.queued is not None:  # still in the backlog
            self._backlog.withdraw(run.queued)
            if run.queued.timer is not None:
                run.queued.timer.cancel()
            return
        sequence.steps.clear()
        self._release(sequence)
        self._admit()


def _enqueued(run: IterativeRun) -> int:
    return run.sequence.steps[0].enqueued_ns


def _renew(step: SequenceStep, now: int) -> None:
    """Queue the request's next step, handed back at `now`, as its last step's record renewed
    (one record fewer to build per row and step). No wake-up: only the worker
    that ran the step renews it, and it looks for its next step at once."""
    step.future = step.future.get_loop().create_future()
    step.enqueued_ns = now
    step.start = False
    step.sequence.steps.append(step)


def _release(channels: list[ResponseChannel]) -> None:
    """Release the holds of a step on `channels`, once: the list is emptied."""
    released = channels.copy()
    channels.clear()
    for channel in released:
        channel.release()
