"""The SLO controller on synthetic windows of latencies and throughputs."""

from __future__ import annotations

from collections.abc import Callable

from inferd.scheduling.adaptive import MAX_HOLD, MIN_SAMPLES, MIN_WINDOW_NS, SloController

MS = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def window(self, controller: SloController, latency: int, execution: int, rows: int) -> None:
        """Feed one full window of equal batches; `rows` requests finish per window."""
        self.now += MIN_WINDOW_NS
        controller.record([latency] * MIN_SAMPLES, rows, execution, self.now)

    def run(
        self, controller: SloController, windows: int, rows: Callable[[int], int], latency: int
    ) -> list[int]:
        """Windows whose throughput is `rows(delay)`; returns the delay after each."""
        delays = []
        for _ in range(windows):
            self.window(controller, latency, MS, rows(controller.delay_ns))
            delays.append(controller.delay_ns)
        return delays


def test_delay_climbs_while_waiting_raises_throughput_up_to_the_ceiling() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 4 * MS, 32, clock.now)
    assert (controller.delay_ns, controller.batch_cap) == (0, 32)
    # A slow frontend: fuller batches keep paying, 10% per step.
    clock.run(controller, 40, lambda delay: int(1000 * 1.1 ** (delay / (MS // 5))), 2 * MS)
    assert controller.delay_ns == 4 * MS


def test_waiting_that_buys_no_throughput_is_taken_back_and_probed_less_often() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 4 * MS, 32, clock.now)
    delays = clock.run(controller, 200, lambda delay: 1000, 2 * MS)
    assert sum(1 for d in delays[-100:] if d == 0) >= 95
    probes = sum(1 for d in delays if d > 0)
    assert 0 < probes < 20  # each failed probe doubles the hold, up to MAX_HOLD windows
    assert max(delays) == controller.max_delay_ns // 20  # never more than one step up


def test_the_climb_stops_where_throughput_peaks() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 4 * MS, 32, clock.now)
    step = controller.max_delay_ns // 20
    peak = 5 * step  # throughput rises until 5 steps of delay, then falls

    def rows(delay: int) -> int:
        return 2000 - 200 * abs(delay - peak) // step

    delays = clock.run(controller, 300, rows, 2 * MS)
    late = delays[-100:]
    assert sum(1 for d in late if d == peak) > 80  # mostly holds at the peak; probes around it


def test_violations_halve_the_delay() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 0, 32, clock.now)  # ceiling: half the target
    clock.run(controller, 40, lambda delay: 1000 + delay // 1000, 2 * MS)
    assert controller.delay_ns == 5 * MS
    clock.window(controller, 12 * MS, MS, 1000)
    assert controller.delay_ns == 5 * MS // 2
    for _ in range(5):
        clock.window(controller, 12 * MS, MS, 1000)
    assert controller.delay_ns == 0
    assert controller.batch_cap == 32  # executions are short: the cap is not the problem


def test_the_cap_shrinks_when_one_execution_takes_most_of_the_target() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 0, 32, clock.now)
    clock.window(controller, 12 * MS, 8 * MS, 1000)
    assert (controller.delay_ns, controller.batch_cap) == (0, 24)
    clock.window(controller, 3 * MS, 2 * MS, 1000)
    assert controller.batch_cap == 26


def test_latency_that_is_queueing_never_shrinks_the_cap() -> None:
    # Closed-loop clients on a saturated server: smaller batches would only add queueing.
    clock = Clock()
    controller = SloController(10 * MS, 0, 32, clock.now)
    for _ in range(50):
        clock.window(controller, 40 * MS, 8 * MS, 1000)
        assert controller.batch_cap == 32


def test_a_shrink_that_does_not_lower_p99_is_undone_and_tried_less_often() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 0, 32, clock.now)
    caps = []
    for _ in range(100):
        clock.window(controller, 14 * MS, 8 * MS, 1000)
        caps.append(controller.batch_cap)
    assert caps[:2] == [24, 32]  # shrunk, no better, put back
    shrinks = sum(1 for cap in caps if cap < 32)
    assert 0 < shrinks < 10  # each failed shrink doubles the wait, up to MAX_HOLD windows
    assert min(caps) == 24  # never a second shrink on top of a failed one


def test_a_step_down_that_costs_throughput_is_taken_back() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 4 * MS, 32, clock.now)
    step = controller.max_delay_ns // 20
    clock.run(controller, 40, lambda delay: 1000 + delay // 100, 2 * MS)  # climb to the top
    assert controller.delay_ns == 4 * MS
    # Throughput now depends steeply on the delay: the next downward probe loses and is undone.
    delays = clock.run(controller, 2 * MAX_HOLD, lambda delay: 1000 + delay // 100, 2 * MS)
    assert min(delays) >= 4 * MS - step
    assert delays[-1] == 4 * MS


def test_a_window_needs_enough_requests_and_enough_time() -> None:
    few = SloController(10 * MS, 0, 32, 0)
    few.record([MS] * (MIN_SAMPLES - 1), 99, MS, 10 * MIN_WINDOW_NS)
    assert few.delay_ns == 0
    brief = SloController(10 * MS, 0, 32, 0)
    brief.record([MS] * MIN_SAMPLES, 100, MS, MIN_WINDOW_NS // 2)
    assert brief.delay_ns == 0
    brief.record([MS], 1, MS, MIN_WINDOW_NS)
    assert brief.delay_ns > 0  # the first full window probes upward
