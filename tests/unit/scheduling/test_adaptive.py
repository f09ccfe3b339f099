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


def _probes_near_the_target(controller: SloController, clock: Clock, p99_at_zero: list[int]) -> int:
    """Windows at a delay above 0 while p99 at delay 0 cycles through `p99_at_zero` and any
    wait halves the throughput and pushes p99 over the target (closed-loop clients the
    server keeps up with)."""
    above = 0
    for window in range(400):
        if controller.delay_ns:
            clock.window(controller, 12 * MS, MS // 2, 500)
            above += 1
        else:
            clock.window(controller, p99_at_zero[window % len(p99_at_zero)], MS // 2, 1000)
    return above


def test_violations_near_the_target_do_not_make_the_controller_probe_upwards_often() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    # At delay 0, p99 crosses the target every other window (noise), else has room.
    above = _probes_near_the_target(controller, clock, [11 * MS, 3 * MS])
    # Each failed probe doubles the hold, up to MAX_HOLD windows; a violation never resets it.
    assert 0 < above < 400 // MAX_HOLD + 6


def test_a_step_up_that_ends_in_a_violation_is_a_failed_probe() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    above = _probes_near_the_target(controller, clock, [3 * MS])
    assert 0 < above < 400 // MAX_HOLD + 6


def test_a_probe_with_nowhere_to_go_does_not_shorten_the_hold() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    step = controller.max_delay_ns // 20
    above = 0
    for window in range(400):
        if controller.delay_ns:  # waiting costs throughput; p99 stays within the target
            clock.window(controller, 9 * MS, MS // 2, 500)
            above += 1
        else:  # every other window without the room to probe upwards
            clock.window(controller, (9 if window % 2 else 3) * MS, MS // 2, 1000)
        assert controller.delay_ns <= step
    assert 0 < above < 400 // MAX_HOLD + 6


def test_a_step_is_judged_against_the_mean_of_the_windows_before_it() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    step = controller.max_delay_ns // 20
    clock.window(controller, 2 * MS, MS, 1000)  # the first window probes upwards
    assert controller.delay_ns == step
    clock.window(controller, 2 * MS, MS, 1000)  # no gain: taken back, hold two windows
    assert controller.delay_ns == 0
    for rows in (1100, 900):  # noisy windows at delay 0, mean 1000; then the next probe
        clock.window(controller, 2 * MS, MS, rows)
    assert controller.delay_ns == step
    # 960 beats the last window (900) by more than GAIN, but is below the mean (1000).
    clock.window(controller, 2 * MS, MS, 960)
    assert controller.delay_ns == 0


def test_one_long_execution_in_a_window_does_not_shrink_the_cap() -> None:
    controller = SloController(10 * MS, 0, 32, 0)
    # A window over the target whose median batch runs briefly, one batch of ten preempted.
    for batch in range(10):
        execution = 8 * MS if batch == 0 else MS // 2
        controller.record([12 * MS] * 10, 10, execution, MIN_WINDOW_NS)
    assert (controller.delay_ns, controller.batch_cap) == (0, 32)


def test_a_step_is_judged_against_recent_windows_only() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    step = controller.max_delay_ns // 20
    # No room to probe upwards (p99 at 90% of the target) while the load doubles.
    for rows in [1000] * 200 + [2000] * 2 * MAX_HOLD:
        clock.window(controller, 9 * MS, MS, rows)
    assert controller.delay_ns == 0
    # With room, a probe upwards that changes nothing (against the windows before the load
    # doubled it would look like a gain) is taken back.
    delays = clock.run(controller, 2 * MAX_HOLD, lambda delay: 2000, 2 * MS)
    assert max(delays) == step
    assert delays[-1] == 0
