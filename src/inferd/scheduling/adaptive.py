"""SLO-adaptive batching: steer the queue delay and batch cap to keep p99 under a target
while getting the most throughput out of the instances.

Evaluated once per window of completed requests (at least `MIN_SAMPLES` requests and
`MIN_WINDOW_NS`), never per request. A window's execution time is its median batch's: one
execution stretched by a preempted thread says nothing about the batch size.

- **p99 above the target**: halve the queue delay (multiplicative decrease). When the delay
  is already 0, one batch execution alone takes more than half the target, and p99 is within
  two executions (the latency is execution, not queueing), the batch may be too big for the
  target, so the batch cap shrinks by a quarter as well. That shrink is a
  probe: when the next window's p99 is no better (latency made of queueing, as with
  closed-loop clients, gets worse with smaller batches), the cap is put back and the next
  shrink waits for a hold that doubles each time one fails.
- **p99 within the target**: hill-climb on throughput, one delay step (1/20 of the ceiling)
  at a time. A step is judged against the mean throughput of the windows run at the setting
  before it, the last `MAX_HOLD` of them (one noisy window is no reference, nor are windows
  from before the load changed). A step that raised throughput by
  more than `GAIN` is followed by another in the same direction (upward only while p99 stays
  under `HEADROOM` x target); a step that cost throughput is taken back; a downward step that
  changed nothing is kept (same throughput, lower latency). After a step is taken back the
  controller holds, and probes again after a hold that doubles each time a probe fails (up
  to `MAX_HOLD` windows), alternating directions, so it follows a load that changes.

A violation never shortens that hold (it starts it again at its length), and a step up that
ends in one is a failed probe: near the target, where noise crosses it now and then, the
controller would otherwise probe upwards every other window, and each probe costs the
throughput that waiting loses.

Waiting pays when requests reach the batcher slower than a batch runs (a slow frontend such
as gRPC, or a model whose cost per row falls steeply with batch size): fuller batches raise
throughput, and the controller climbs. It does not pay for closed-loop clients that the
server already keeps up with: waiting only lowers their rate, and the controller stays at 0.

Latency is the server's own: from when the frontend received the request (or it was queued)
to when its batch finished.
"""

from __future__ import annotations

from collections import deque

import numpy as np

MIN_SAMPLES = 100
MIN_WINDOW_NS = 20_000_000
HEADROOM = 0.8
GAIN = 0.03  # a throughput change smaller than this share is noise
MAX_HOLD = 32
EXECUTION_BOUND = 2  # p99 within this many executions: latency is mostly execution
_STEPS = 20


class SloController:
    def __init__(self, target_ns: int, max_delay_ns: int, max_batch_size: int, now_ns: int) -> None:
        self.target_ns = target_ns
        # Without a configured delay, waiting up to half the target still leaves it room.
        self.max_delay_ns = max_delay_ns or target_ns // 2
        self.max_batch_size = max_batch_size
        self.delay_ns = 0
        self.batch_cap = max_batch_size
        self._delay_step = max(self.max_delay_ns // _STEPS, 1)
        self._cap_step = max(max_batch_size // 16, 1)
        self._latencies: list[int] = []
        self._executions: list[int] = []
        self._window_start_ns = now_ns
        self._window_rows = 0
        # Throughput of the last windows run at the current setting, and the mean of those
        # run at the setting before the last change: what a step is judged against.
        self._run: deque[float] = deque(maxlen=MAX_HOLD)
        self._reference = 0.0
        self._move = 0  # the step the last window took: +1 up, -1 down, 0 none
        self._hold = 0  # windows to wait before the next probe
        self._hold_length = 1
        self._probe_down = False
        self._cap_before_shrink = 0  # the cap a shrink on probation replaced (0: none)
        self._p99_before_shrink = 0.0
        self._cap_hold = 0
        self._cap_hold_length = 1

    def record(self, latencies_ns: list[int], rows: int, execution_ns: int, now_ns: int) -> None:
        """One batch finished: its requests' latencies, its rows and its execution time."""
        self._latencies.extend(latencies_ns)
        self._executions.append(execution_ns)
        self._window_rows += rows
        elapsed = now_ns - self._window_start_ns
        if len(self._latencies) >= MIN_SAMPLES and elapsed >= MIN_WINDOW_NS:
            self._adjust(self._window_rows * 1e9 / elapsed)
            self._latencies.clear()
            self._executions.clear()
            self._window_start_ns = now_ns
            self._window_rows = 0

    def _adjust(self, throughput: float) -> None:
        p99 = float(np.percentile(np.fromiter(self._latencies, np.int64), 99))
        execution = sorted(self._executions)[len(self._executions) // 2]
        batch_fits = execution * 2 <= self.target_ns
        room = p99 < self.target_ns * HEADROOM
        setting = (self.delay_ns, self.batch_cap)
        self._run.append(throughput)
        self._judge_shrink(p99)
        if p99 > self.target_ns:
            # Smaller batches only help when the latency is mostly execution; when it is mostly
            # queueing (closed-loop clients on a saturated server) they make it worse.
            execution_bound = p99 <= EXECUTION_BOUND * execution
            self._shed(batch_fits or not execution_bound, p99)
        else:
            self._climb(throughput, room)
            if room and batch_fits:
                self.batch_cap = min(self.batch_cap + self._cap_step, self.max_batch_size)
        if (self.delay_ns, self.batch_cap) != setting:
            self._reference = sum(self._run) / len(self._run)
            self._run.clear()

    def _shed(self, batch_fits: bool, p99: float) -> None:
        if self._move > 0:  # the step up ended in a violation: a failed probe
            self._hold_length = min(self._hold_length * 2, MAX_HOLD)
        self.delay_ns = self.delay_ns // 2 if self.delay_ns > self._delay_step else 0
        if self.delay_ns == 0 and not batch_fits and self.batch_cap > 1:
            if self._cap_hold > 0:
                self._cap_hold -= 1
            else:
                self._cap_before_shrink, self._p99_before_shrink = self.batch_cap, p99
                self.batch_cap = max(1, self.batch_cap * 3 // 4)
        self._move = 0
        self._hold = self._hold_length

    def _judge_shrink(self, p99: float) -> None:
        """Keep the last shrink of the cap if it lowered p99; else put the cap back."""
        if not self._cap_before_shrink:
            return
        if p99 < self._p99_before_shrink * (1 - GAIN):
            self._cap_hold_length = 1
        else:
            self.batch_cap = self._cap_before_shrink
            self._cap_hold = self._cap_hold_length
            self._cap_hold_length = min(self._cap_hold_length * 2, MAX_HOLD)
        self._cap_before_shrink = 0

    def _climb(self, throughput: float, room: bool) -> None:
        last = self._reference
        gained = last > 0 and throughput > last * (1 + GAIN)
        lost = last > 0 and throughput < last * (1 - GAIN)
        if self._move > 0:
            if gained and room and self.delay_ns < self.max_delay_ns:
                self._step(+1)
            elif gained:
                self._settle(success=True)
            else:
                self._step(-1)  # waiting longer bought nothing: take it back
                self._settle(success=False)
        elif self._move < 0:
            if lost:
                self._step(+1)  # waiting less cost throughput: take it back
                self._settle(success=False)
            elif self.delay_ns > 0:
                self._step(-1)  # no worse with less waiting: keep going down
            else:
                self._settle(success=True)
        else:
            self._hold -= 1
            if self._hold <= 0:
                self._probe(room)

    def _probe(self, room: bool) -> None:
        self._probe_down = not self._probe_down
        if self._probe_down and self.delay_ns > 0:
            self._step(-1)
        elif room and self.delay_ns < self.max_delay_ns:
            self._step(+1)
        else:  # nowhere to probe: hold as long again, without counting it a success
            self._hold = self._hold_length

    def _step(self, direction: int) -> None:
        delay = self.delay_ns + direction * self._delay_step
        self.delay_ns = min(max(delay, 0), self.max_delay_ns)
        self._move = direction

    def _settle(self, success: bool) -> None:
        self._move = 0
        self._hold_length = 1 if success else min(self._hold_length * 2, MAX_HOLD)
        self._hold = self._hold_length
