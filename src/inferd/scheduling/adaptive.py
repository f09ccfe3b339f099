"""SLO-adaptive batching: steer the queue delay and batch cap to keep p99 under a target.

An AIMD controller, evaluated once per window of completed requests (at least
`MIN_SAMPLES` requests and `MIN_WINDOW_NS`), never per request:

- p99 above the target: halve the queue delay (multiplicative decrease). When the delay is
  already 0 and one batch execution alone takes more than half the target, the batch is
  too big for the target, so the batch cap shrinks by a quarter as well.
- p99 below `HEADROOM` x target: add one step (1/20 of the ceiling) to the delay and grow the
  cap by one step while executions stay under half the target (additive increase). A delay
  step that lowered the throughput (closed-loop clients wait for their answers, so waiting
  longer can mean fewer requests) is taken back instead.

Latency is the server's own: from when the frontend received the request (or it was queued)
to when its batch finished.
"""

from __future__ import annotations

import numpy as np

MIN_SAMPLES = 100
MIN_WINDOW_NS = 20_000_000
HEADROOM = 0.8
_STEPS = 20
_LOST_THROUGHPUT = 0.9  # an increase that left less than this share of throughput is undone


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
        self._window_start_ns = now_ns
        self._window_rows = 0
        self._max_execution_ns = 0
        self._last_throughput = 0.0
        self._raised_delay = False

    def record(self, latencies_ns: list[int], rows: int, execution_ns: int, now_ns: int) -> None:
        """One batch finished: its requests' latencies, its rows and its execution time."""
        self._latencies.extend(latencies_ns)
        self._window_rows += rows
        self._max_execution_ns = max(self._max_execution_ns, execution_ns)
        elapsed = now_ns - self._window_start_ns
        if len(self._latencies) >= MIN_SAMPLES and elapsed >= MIN_WINDOW_NS:
            self._adjust(self._window_rows * 1e9 / elapsed)
            self._latencies.clear()
            self._window_start_ns = now_ns
            self._window_rows = 0
            self._max_execution_ns = 0

    def _adjust(self, throughput: float) -> None:
        p99 = float(np.percentile(np.fromiter(self._latencies, np.int64), 99))
        batch_fits = self._max_execution_ns * 2 <= self.target_ns
        raised = False
        if p99 > self.target_ns:
            self.delay_ns = self.delay_ns // 2 if self.delay_ns > self._delay_step else 0
            if self.delay_ns == 0 and not batch_fits:
                self.batch_cap = max(1, self.batch_cap * 3 // 4)
        elif p99 < self.target_ns * HEADROOM:
            if self._raised_delay and throughput < self._last_throughput * _LOST_THROUGHPUT:
                self.delay_ns = max(0, self.delay_ns - self._delay_step)
            elif self.delay_ns < self.max_delay_ns:
                self.delay_ns = min(self.delay_ns + self._delay_step, self.max_delay_ns)
                raised = True
            if batch_fits:
                self.batch_cap = min(self.batch_cap + self._cap_step, self.max_batch_size)
        self._raised_delay = raised
        self._last_throughput = throughput
