"""Unbatched requests on instances that stage, driven by the instances' own completions.

With batching off, every batch is one request. Where every instance runs its batches one after
another on its own thread (`Stages`), no worker task stands between the queue and the
instances: a request that finds the queue empty and an instance with room is handed to that
instance by its caller's task; any other waits in the queue. Each instance holds at most two:
one running and the next waiting on it, which starts as the first ends without a round trip
through the event loop. When a request ends, the instance's thread makes one loop callback
(`Relay._finished`) that reports the batch, answers the caller's future and hands that
instance the next queued request. Under load a request so costs its caller's task and that
one callback, as a bare server's does, where a worker task would add a wake-up, a task step and
a future hand-off per request.

A request handed over counts as pending until it starts or its caller goes away, and does not
run if its caller has gone by then (`Stages`). A request in the queue stays there,
withdrawable, until an instance has room; requests are handed over in the queue's order
(without batching there are no priority levels, queue policies or `preserve_ordering`: those
are `dynamic_batching`'s). An idle instance may be lent to a caller that runs a request on its
own thread (`Lease`); nothing is handed to it until it is back.

A request that finds the model quiet runs on the event loop itself, in its caller's task,
where its instance allows it (`RunsOnLoop`: the backend declares that safe, and the instance's
batches measured so far are short, `LOOP_LIMIT_NS`). Quiet: no instance holds or is lent a
request, and the request arrived after the model's last request ended. A client that waits
for each answer before it sends the next (concurrency 1) so saves both thread hand-offs and
their wake-ups. Under load the last condition fails (requests overlap), so they keep going to
the instances' threads, each instance running its own, while the loop serves the next ones.
A process that may use only one CPU (`usable_cpus`, counted when the model loads) has no
such overlap to keep: the loop and the instances' threads take turns on that CPU, and each
hand-off only adds its wake-ups. There, while an instance may run on the loop, a request runs
on the loop whenever no instance holds or is lent one, even one that arrived before the last
ended; one that finds an instance busy queues (none is handed over), and once the last busy
one is done the queue runs on the loop, in order. Under load the model so leaves the threads
once its first batches (measured there) are done, and stays on the loop while its batches stay
short; handing each arrival to a busy instance instead would keep one busy as long as the
load lasts. With dynamic batching on, the one-CPU rule applies to formed batches instead: the
batcher's worker runs a short batch on the loop (`DynamicBatcher._execute`).

On one CPU, at most `RUNS_PER_PASS` requests run on the loop in one pass of it; the others
queue, and run in the next passes in their order, after the loop has read what arrived
meanwhile, which queues behind them. Run all at once, the requests read in one burst (all
32 clients' at concurrency 32) keep the loop from reading for as long as they all run, and
a request that arrives meanwhile waits for all of them, then for its turn in the next burst:
twice the median latency (docs/benchmarks.md). Four a pass keep the answers leaving in
groups (`frontends/http/answer_groups.py`), and the loop's read of its sockets to one per
four model runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from itertools import islice

from inferd.core.running_loop import running_loop
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import RunsOnLoop, Stages
from inferd.scheduling.batch import BatchRunner, Deliver, fail_undelivered
from inferd.scheduling.idle import Slot
from inferd.scheduling.queue import PriorityQueue, Queued

HELD = 2  # requests an instance holds at once: the one it runs and the next, waiting there
RUNS_PER_PASS = 4  # on one CPU, requests run on the loop in one pass of it at most


class _Lane:
    """One instance, the requests handed to it and not yet ended, and its lending slot."""

    __slots__ = ("handed", "instance", "on_loop", "slot")

    def __init__(self, instance: Stages) -> None:
        self.instance = instance
        self.on_loop = instance if isinstance(instance, RunsOnLoop) else None
        self.handed: deque[Queued] = deque()  # in the order the instance runs them
        self.slot = Slot(instance)

    @property
    def held(self) -> int:
        return len(self.handed)

    def waiting(self) -> int:
        """Requests handed over that have not started, whose callers still wait."""
        started = len(self.handed) - self.instance.waiting()
        return sum(not call.future.done() for call in islice(self.handed, started, None))


class Relay:
    """Moves a model's unbatched requests from its queue to its instances (see the module)."""

    def __init__(
        self,
        instances: Sequence[Stages],
        runner: BatchRunner[Queued],
        queue: PriorityQueue,
        batched: bool,
        one_cpu: bool,
    ) -> None:
        """`batched`: the model has a batch axis (a request's rows count along it); `one_cpu`:
        the process may use one CPU only, so there is no overlap to keep (see the module)."""
        self._lanes = [_Lane(instance) for instance in instances]
        self._runner = runner
        self._queue = queue
        self._batched = batched
        self._drained: asyncio.Future[None] | None = None  # `stop`'s wait
        self._ended_ns = 0  # when the model's last request ended
        self._one_cpu = one_cpu
        self._runs_in_pass = 0  # requests run on the loop since its pass began
        self._next_pass_due = False

    def pending(self) -> int:
        """Requests queued or handed to an instance behind the one it runs."""
        return len(self._queue) + sum(lane.waiting() for lane in self._lanes)

    async def submit(self, request: InferRequest) -> dict[str, Array]:
        now = time.monotonic_ns()
        request.timestamps.queued = now
        rows = request.batch_size() if self._batched else 1
        future: asyncio.Future[dict[str, Array]] = running_loop().create_future()
        if self._one_cpu or request.timestamps.received >= self._ended_ns:
            here = self._on_loop()
            if here is not None and self._loop_has_turn():
                call = Queued(request, future, now, rows, queued=False)
                self._run_on_loop(here, call)
                return future.result()  # its answer, or the error it failed with
        # A request queues only while no instance has room (or, on one CPU, while it waits
        # to run on the loop), and an instance with room again takes from the queue at once
        # (`_refill`): nothing queued ever waits for a free one.
        lane = self._roomiest()
        if lane is not None:
            self._hand(lane, Queued(request, future, now, rows, queued=False))
            return await future
        queued = Queued(request, future, now, rows)
        self._queue.push(queued)
        try:
            return await future
        except asyncio.CancelledError:  # its client went away: it leaves the queue now
            self._queue.withdraw(queued)
            raise

    def lend(self) -> Slot | None:
        """An idle instance's slot for one request that its caller runs on its own thread;
        None when there is none, or while requests queue (on one CPU they may wait for the
        loop's next pass while every instance is idle)."""
        if len(self._queue):
            return None
        for lane in self._lanes:
            if not lane.held and not lane.slot.lent:
                lane.slot.lent = True
                return lane.slot
        return None

    def give_back(self, slot: Slot) -> None:
        """A lent slot is back: its instance takes the next queued requests."""
        slot.lent = False
        lane = next(lane for lane in self._lanes if lane.slot is slot)
        self._refill(lane)

    async def stop(self) -> None:
        """Once the queue is empty and every instance is back and done (new requests are
        refused by then)."""
        if not self._idle():
            self._drained = running_loop().create_future()
            await self._drained

    def _roomiest(self) -> _Lane | None:
        """The instance holding the fewest requests, if it has room and is not lent. None on
        one CPU while an instance may run on the loop: the request queues until no instance
        is busy, then runs on the loop (`_refill`)."""
        if self._loop_only():
            return None
        best: _Lane | None = None
        for lane in self._lanes:
            if not lane.slot.lent and lane.held < HELD and (best is None or lane.held < best.held):
                best = lane
        return best

    def _on_loop(self) -> _Lane | None:
        """An instance that may run a request on the loop now, when none holds or is lent
        a request."""
        found = None
        for lane in self._lanes:
            if lane.handed or lane.slot.lent:
                return None
            if found is None and lane.on_loop is not None and lane.on_loop.short():
                found = lane
        return found

    def _loop_only(self) -> bool:
        """On one CPU, while an instance may run on the loop: nothing is handed to the
        instances' threads, queued requests wait to run on the loop (`_refill`)."""
        return self._one_cpu and any(
            lane.on_loop is not None and lane.on_loop.short() for lane in self._lanes
        )

    def _loop_has_turn(self) -> bool:
        """On one CPU, whether a request may run on the loop now: nothing queued before it,
        and the pass has room."""
        return not self._one_cpu or (self._runs_in_pass < RUNS_PER_PASS and not len(self._queue))

    def _next_pass_soon(self) -> None:
        if not self._next_pass_due:
            self._next_pass_due = True
            running_loop().call_soon(self._next_pass)

    def _next_pass(self) -> None:
        """A new pass of the loop (its I/O read since): the queued requests' turn."""
        self._next_pass_due = False
        self._runs_in_pass = 0
        self._run_queued()
        self._check_drained()

    def _run_queued(self) -> None:
        """On one CPU, run queued requests on the loop while the pass has room and no
        instance is busy; the rest wait for the next pass."""
        while (
            self._runs_in_pass < RUNS_PER_PASS
            and (here := self._on_loop()) is not None
            and (call := self._next()) is not None
        ):
            self._run_on_loop(here, call)

    def _run_on_loop(self, lane: _Lane, call: Queued) -> None:
        """Run `call` on `lane`'s instance here, on the loop, and answer it as `_finished`
        does. Nothing is handed to the instance, queued or lent meanwhile: the loop is busy."""
        assert lane.on_loop is not None
        _, deliver = self._runner.run_here(lane.on_loop, [call])  # answers an error as a failure
        try:
            deliver()
        except Exception as exc:
            fail_undelivered(lane.instance.name, [call], exc)
        self._ended_ns = time.monotonic_ns()
        if self._one_cpu:
            self._runs_in_pass += 1
            self._next_pass_soon()

    def _hand(self, lane: _Lane, call: Queued) -> None:
        lane.handed.append(call)

        def then(deliver: Deliver) -> None:
            self._finished(lane, call, deliver)

        self._runner.hand(lane.instance, call, then)

    def _finished(self, lane: _Lane, call: Queued, deliver: Deliver) -> None:
        lane.handed.remove(call)  # the first, but for a batch that never reached the instance
        self._ended_ns = time.monotonic_ns()
        try:
            deliver()
        except Exception as exc:
            fail_undelivered(lane.instance.name, [call], exc)
        self._refill(lane)

    def _refill(self, lane: _Lane) -> None:
        """Hand `lane` queued requests while it has room; on one CPU, while a request may run
        on the loop, run them here instead, once no instance holds or is lent one."""
        if self._one_cpu:
            self._run_queued()
        # A lent instance holds nothing, and is back before this.
        while lane.held < HELD and not self._loop_only():
            call = self._next()
            if call is None:
                break
            self._hand(lane, call)
        self._check_drained()

    def _check_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done() and self._idle():
            drained.set_result(None)

    def _next(self) -> Queued | None:
        return self._queue.pop(time.monotonic_ns())

    def _idle(self) -> bool:
        """Nothing queued, and every instance done and back."""
        return not len(self._queue) and all(
            not lane.held and not lane.slot.lent for lane in self._lanes
        )
