"""SLO-adaptive batching: find the queue delay (and batch cap) that serves best at the current
load: p99 under the target if any delay can keep it there, and the most throughput among
the delays that do (the most throughput of all where none does).

Evaluated once per window of completed requests (at least `MIN_SAMPLES` requests and
`MIN_WINDOW_NS`), never per request. A window's execution time is its median batch's: one
execution stretched by a preempted thread says nothing about the batch size.

The delay moves on a ladder: 0, then the ceiling halved until it would drop under
`MIN_DELAY_NS` (for 20 ms: 0, 0.31, 0.62, 1.25, 2.5, 5, 10, 20 ms), so that both the short
delays that fill batches under closed-loop load and the long ones a slow frontend needs are
a few rungs away. The controller keeps a **home** rung and the windows run at it since it
was chosen (the last `MAX_HOLD`); now and then it **probes** a neighbouring rung for one
window and judges that window against the home's windows (median p99, mean throughput):

1. A probe that meets the target where the home does not wins; so does one that raises
   throughput by more than the noise: `GAIN`, or `NOISE` times the mean relative difference
   between successive windows at home where that is more (on a busy machine one window
   says little). At the same throughput, less waiting wins when both meet the target, and
   a p99 lower by more than its own noise (measured the same way) when neither does. The
   winner becomes the home, and the next rung the same way is probed at once. The first
   probe comes after two windows, the noise's first measure.
2. A probe that loses is taken back, and the next waits for a hold that doubles each time a
   probe loses (up to `MAX_HOLD` windows; a win sets it back to one). Probes alternate up
   and down, so the controller follows a load that changes without paying much for it.
3. Upward probes are allowed while the home's p99 has room (under `HEADROOM` x target) or
   is over the target (under closed-loop load a short delay lowers p99 by filling
   batches), not in between, where waiting longer would cross the target.
4. A window at a home that met the target with p99 over `SEVERE` x target (the load rose)
   probes one rung down at once, judged against that window alone.

Under the target, waiting is only kept where it buys throughput (a slow frontend such as
gRPC, or a model whose cost per row falls steeply with batch size); for closed-loop clients
the server keeps up with, every upward probe loses and the controller stays at 0. Where no
delay meets the target, the wins are throughput wins, and it settles at the fastest rung.

The batch cap: at delay 0, with p99 over the target, one batch execution taking more than
half the target and p99 within two executions (the latency is execution, not queueing),
the batch may be too big for the target, and the cap shrinks by a quarter. That shrink is
on probation: when the next window's p99 is no better, the cap is put back and the next
shrink waits for a hold that doubles each time one fails. While p99 has room and executions
stay under half the target, the cap grows back by 1/16 a window.

Latency is the server's own: from when the frontend received the request (or it was queued)
to when its batch finished.
"""

from __future__ import annotations

from collections import deque

import numpy as np

MIN_SAMPLES = 100
MIN_WINDOW_NS = 20_000_000
MIN_DELAY_NS = 200_000  # the shortest non-zero rung is at least this
HEADROOM = 0.8
SEVERE = 2.0
GAIN = 0.03  # a throughput or p99 change smaller than this share is noise
NOISE_WINDOWS = 8  # the noise is a moving average over about this many windows
NOISE = 2.0  # a throughput change within this many times the noise is noise too
MAX_HOLD = 32
EXECUTION_BOUND = 2  # p99 within this many executions: latency is mostly execution

Window = tuple[float, float]  # (throughput, p99 in ns)


def delay_ladder(max_delay_ns: int) -> tuple[int, ...]:
    """0, then `max_delay_ns` halved while it stays at or over `MIN_DELAY_NS`, ascending."""
    rungs = [max_delay_ns]
    while rungs[-1] // 2 >= MIN_DELAY_NS:
        rungs.append(rungs[-1] // 2)
    return (0, *reversed(rungs))


class SloController:
    def __init__(self, target_ns: int, max_delay_ns: int, max_batch_size: int, now_ns: int) -> None:
        self.target_ns = target_ns
        # Without a configured delay, waiting up to half the target still leaves it room.
        self.max_delay_ns = max_delay_ns or target_ns // 2
        self.delays = delay_ladder(self.max_delay_ns)
        self.max_batch_size = max_batch_size
        self.delay_ns = 0
        self.batch_cap = max_batch_size
        self._cap_step = max(max_batch_size // 16, 1)
        self._latencies: list[int] = []
        self._executions: list[int] = []
        self._window_start_ns = now_ns
        self._window_rows = 0
        self._home = 0  # the rung the probes are judged against
        self._windows: deque[Window] = deque(maxlen=MAX_HOLD)  # run at home since it was chosen
        self._probe = 0  # the direction of the probe running now: +1 up, -1 down, 0 none
        # The mean relative difference in throughput (and in p99) between successive windows
        # at home: how much one window says on this machine, at this load.
        self._noise = 0.0
        self._p99_noise = 0.0
        self._pairs = 0  # successive windows at home seen, up to NOISE_WINDOWS
        self._hold = 2  # windows at home before the next probe
        self._hold_length = 1
        self._probe_down = False  # the direction of the last probe after a hold
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
        if self._probe:
            self._judge_probe((throughput, p99))
        else:
            self._at_home((throughput, p99), execution)

    def _at_home(self, window: Window, execution: int) -> None:
        p99 = window[1]
        home_met = bool(self._windows) and self._reference()[1] <= self.target_ns
        if self._windows:
            last = self._windows[-1]
            self._pairs = min(self._pairs + 1, NOISE_WINDOWS)  # from the first pair on, a mean
            self._noise += (_difference(window[0], last[0]) - self._noise) / self._pairs
            self._p99_noise += (_difference(window[1], last[1]) - self._p99_noise) / self._pairs
        self._windows.append(window)
        if self._steer_cap(p99, execution):
            self._windows.clear()  # windows at another cap are no reference
            return
        if home_met and p99 > SEVERE * self.target_ns and self._home > 0:
            self._windows.clear()
            self._windows.append(window)
            self._start_probe(-1)
            return
        self._hold -= 1
        if self._hold <= 0:
            self._probe_after_hold()

    def _probe_after_hold(self) -> None:
        """Probe the other way than last time, or this way again if that one is closed."""
        self._probe_down = not self._probe_down
        first, second = (-1, +1) if self._probe_down else (+1, -1)
        for direction in (first, second):
            if self._may_probe(direction):
                self._start_probe(direction)
                return
        self._hold = self._hold_length  # nowhere to probe: hold as long again, no success

    def _may_probe(self, direction: int) -> bool:
        if direction < 0:
            return self._home > 0
        p99 = self._reference()[1]
        crossing = self.target_ns * HEADROOM <= p99 <= self.target_ns
        return self._home + 1 < len(self.delays) and not crossing

    def _start_probe(self, direction: int) -> None:
        self._probe = direction
        self.delay_ns = self.delays[self._home + direction]

    def _judge_probe(self, window: Window) -> None:
        direction, self._probe = self._probe, 0
        if self._wins(window, self._reference(), direction):
            self._home += direction
            self._windows.clear()
            self._windows.append(window)
            self._hold_length = 1
            if self._may_probe(direction):
                self._start_probe(direction)
            else:
                self._hold = self._hold_length
        else:
            self.delay_ns = self.delays[self._home]
            self._hold_length = min(self._hold_length * 2, MAX_HOLD)
            self._hold = self._hold_length

    def _reference(self) -> Window:
        """The home's windows: mean throughput, median p99 (one preempted window is no p99)."""
        throughput = sum(window[0] for window in self._windows) / len(self._windows)
        p99s = sorted(window[1] for window in self._windows)
        return throughput, p99s[len(p99s) // 2]

    def _wins(self, probe: Window, home: Window, direction: int) -> bool:
        meets, home_meets = probe[1] <= self.target_ns, home[1] <= self.target_ns
        if meets != home_meets:
            return meets
        if abs(probe[0] - home[0]) > home[0] * max(GAIN, NOISE * self._noise):
            return probe[0] > home[0]
        if meets:
            return direction < 0  # the same throughput with less waiting
        return probe[1] < home[1] * (1 - max(GAIN, NOISE * self._p99_noise))

    def _steer_cap(self, p99: float, execution: int) -> bool:
        """Judge a shrink on probation, shrink or grow the cap; True when the cap changed."""
        cap = self.batch_cap
        self._judge_shrink(p99)
        batch_fits = execution * 2 <= self.target_ns
        if p99 > self.target_ns:
            # Smaller batches only help when the latency is mostly execution; when it is mostly
            # queueing (closed-loop clients on a saturated server) they make it worse.
            execution_bound = p99 <= EXECUTION_BOUND * execution
            if self.delay_ns == 0 and not batch_fits and execution_bound and self.batch_cap > 1:
                self._shrink_cap(p99)
        elif p99 < self.target_ns * HEADROOM and batch_fits:
            self.batch_cap = min(self.batch_cap + self._cap_step, self.max_batch_size)
        return self.batch_cap != cap

    def _shrink_cap(self, p99: float) -> None:
        if self._cap_hold > 0:
            self._cap_hold -= 1
            return
        self._cap_before_shrink, self._p99_before_shrink = self.batch_cap, p99
        self.batch_cap = max(1, self.batch_cap * 3 // 4)

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


def _difference(value: float, last: float) -> float:
    """The difference between two windows' figures, relative to their mean."""
    return abs(value - last) * 2 / (value + last or 1)
