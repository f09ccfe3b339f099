"""The SLO controller on synthetic windows of latencies and throughputs."""

from __future__ import annotations

from collections.abc import Callable

from inferd.scheduling.adaptive import (
    MAX_HOLD,
    MIN_SAMPLES,
    MIN_WINDOW_NS,
    SloController,
    delay_ladder,
)

MS = 1_000_000

Serve = Callable[[int], tuple[int, int]]  # rung index -> (p99, requests in the window)


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
        return self.serve(controller, windows, lambda rung: (latency, rows(rung)))

    def serve(self, controller: SloController, windows: int, serve: Serve) -> list[int]:
        """Windows whose p99 and throughput are `serve(rung)`; returns the rung after each."""
        rungs = []
        for _ in range(windows):
            latency, rows = serve(controller.delays.index(controller.delay_ns))
            self.window(controller, latency, MS, rows)
            rungs.append(controller.delays.index(controller.delay_ns))
        return rungs


def test_the_ladder_halves_the_ceiling_down_to_a_fifth_of_a_millisecond() -> None:
    assert delay_ladder(20 * MS) == (
        0,
        312_500,
        625_000,
        1_250_000,
        2_500_000,
        5 * MS,
        10 * MS,
        20 * MS,
    )
    assert delay_ladder(MS // 2) == (0, 250_000, MS // 2)
    assert delay_ladder(MS // 10) == (0, MS // 10)
    assert SloController(10 * MS, 0, 32, 0).delays[-1] == 5 * MS  # no ceiling: half the target


def test_delay_climbs_while_waiting_raises_throughput_up_to_the_ceiling() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 4 * MS, 32, clock.now)
    assert (controller.delay_ns, controller.batch_cap) == (0, 32)
    # A slow frontend: fuller batches keep paying, 10% per rung.
    # Two windows at home, then each won probe is followed by the next rung up at once: one
    # window a rung.
    clock.run(controller, len(controller.delays), lambda rung: int(1000 * 1.1**rung), 2 * MS)
    assert controller.delay_ns == 4 * MS
    clock.run(controller, 40, lambda rung: int(1000 * 1.1**rung), 2 * MS)
    assert controller.delay_ns == 4 * MS


def test_waiting_that_buys_no_throughput_is_taken_back_and_probed_less_often() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 4 * MS, 32, clock.now)
    rungs = clock.run(controller, 200, lambda rung: 1000, 2 * MS)
    assert sum(1 for rung in rungs[-100:] if rung == 0) >= 95
    probes = sum(1 for rung in rungs if rung > 0)
    assert 0 < probes < 20  # each failed probe doubles the hold, up to MAX_HOLD windows
    assert max(rungs) == 1  # never more than one rung up


def test_the_climb_stops_where_throughput_peaks() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    rungs = clock.run(controller, 300, lambda rung: 2000 - 200 * abs(rung - 3), 2 * MS)
    assert sum(1 for rung in rungs[-100:] if rung == 3) > 90  # holds at the peak, probes around


def test_probes_go_both_ways_and_follow_a_peak_that_moves_down() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    clock.run(controller, 100, lambda rung: 2000 - 200 * abs(rung - 3), 2 * MS)
    assert controller.delay_ns == controller.delays[3]
    rungs = clock.run(controller, 300, lambda rung: 2000 - 200 * abs(rung - 1), 2 * MS)
    assert sum(1 for rung in rungs[-100:] if rung == 1) > 90


def test_over_the_target_a_short_delay_that_meets_it_is_kept() -> None:
    # Closed-loop clients on a busy server: at delay 0 p99 is over the target; the shortest
    # delay fills batches and brings it within, at a little less throughput; longer ones
    # only lose throughput.
    clock = Clock()
    controller = SloController(5 * MS, 20 * MS, 32, clock.now)

    def serve(rung: int) -> tuple[int, int]:
        return [(6 * MS, 1000), (4 * MS, 950)][rung] if rung < 2 else (4 * MS, 600)

    rungs = clock.serve(controller, 200, serve)
    assert sum(1 for rung in rungs[-100:] if rung == 1) >= 95


def test_where_no_delay_meets_the_target_it_settles_at_the_fastest() -> None:
    clock = Clock()
    controller = SloController(5 * MS, 20 * MS, 32, clock.now)
    # p99 over twice the target everywhere: no rung met it, so none steps down at once.
    rungs = clock.serve(controller, 300, lambda rung: (12 * MS, 3000 - 300 * abs(rung - 2)))
    assert sum(1 for rung in rungs[-100:] if rung == 2) > 90


def test_where_no_delay_meets_the_target_and_throughput_is_flat_p99_decides() -> None:
    clock = Clock()
    controller = SloController(5 * MS, 20 * MS, 32, clock.now)
    rungs = clock.serve(controller, 300, lambda rung: (9 * MS - (MS if rung == 1 else 0), 3000))
    assert sum(1 for rung in rungs[-100:] if rung == 1) > 90


def test_a_delay_that_buys_nothing_any_more_is_given_up() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 4 * MS, 32, clock.now)
    clock.run(controller, 40, lambda rung: int(1000 * 1.1**rung), 2 * MS)
    assert controller.delay_ns == 4 * MS
    # The frontend sped up: waiting no longer pays, and downward probes that cost nothing win.
    clock.run(controller, 200, lambda rung: 2000, 2 * MS)
    assert controller.delay_ns == 0


def test_a_severe_violation_steps_down_at_once() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 4 * MS, 32, clock.now)
    clock.run(controller, 100, lambda rung: int(1000 * 1.1**rung), 2 * MS)
    assert controller.delay_ns == 4 * MS
    clock.window(controller, 11 * MS, MS, 1200)  # over the target, not twice: wait for the hold
    assert controller.delay_ns == 4 * MS
    clock.window(controller, 21 * MS, MS, 1200)
    assert controller.delay_ns == 2 * MS


def test_the_cap_shrinks_when_one_execution_takes_most_of_the_target() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 0, 32, clock.now)
    clock.window(controller, 12 * MS, 8 * MS, 1000)
    assert (controller.delay_ns, controller.batch_cap) == (0, 24)
    clock.window(controller, 3 * MS, 2 * MS, 1000)
    assert controller.batch_cap == 26


def test_windows_at_another_batch_cap_are_no_reference_for_a_probe() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 0, 32, clock.now)
    for _ in range(MAX_HOLD):  # a light load, and waiting buys nothing
        clock.window(controller, 3 * MS, 2 * MS, 500)
    clock.window(controller, 12 * MS, 8 * MS, 1000)  # batches too big for the target: 24
    assert (controller.delay_ns, controller.batch_cap) == (0, 24)
    # With short executions and room the cap grows back, while waiting still buys nothing.
    # Against the windows at the old load and cap, one window up would look like a gain.
    rungs = clock.serve(controller, 100, lambda rung: (3 * MS, 1000))
    assert controller.batch_cap == 32
    assert sum(1 for rung in rungs if rung > 0) < 10


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


def test_a_window_needs_enough_requests_and_enough_time() -> None:
    few = SloController(10 * MS, 0, 32, 0)
    few.record([MS] * (MIN_SAMPLES - 1), 99, MS, 10 * MIN_WINDOW_NS)
    assert few.delay_ns == 0
    brief = SloController(10 * MS, 0, 32, 0)
    brief.record([MS] * MIN_SAMPLES, 100, MS, MIN_WINDOW_NS // 2)
    assert brief.delay_ns == 0
    brief.record([MS], 1, MS, MIN_WINDOW_NS)
    assert brief.delay_ns == 0
    brief.record([MS] * MIN_SAMPLES, 100, MS, 2 * MIN_WINDOW_NS)
    assert brief.delay_ns == brief.delays[1]  # the second full window probes upward


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
    # Each failed probe doubles the hold, up to MAX_HOLD windows.
    assert 0 < above < 400 // MAX_HOLD + 6


def test_a_probe_that_ends_in_a_violation_loses() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    above = _probes_near_the_target(controller, clock, [3 * MS])
    assert 0 < above < 400 // MAX_HOLD + 6


def test_no_upward_probe_while_p99_is_just_under_the_target() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    # p99 between HEADROOM x target and the target: waiting longer would cross it.
    rungs = clock.run(controller, 100, lambda rung: 1000, 9 * MS)
    assert max(rungs) == 0


def test_a_probe_is_judged_against_the_mean_of_the_windows_before_it() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    shortest = controller.delays[1]
    for _ in range(2):  # the second window probes upwards
        clock.window(controller, 2 * MS, MS, 1000)
    assert controller.delay_ns == shortest
    clock.window(controller, 2 * MS, MS, 1000)  # no gain: taken back, hold two windows
    assert controller.delay_ns == 0
    for rows in (1100, 900):  # noisy windows at delay 0, mean 1000; then the next probe
        clock.window(controller, 2 * MS, MS, rows)
    assert controller.delay_ns == shortest
    # 960 beats the last window (900) by more than GAIN, but is below the mean (1000).
    clock.window(controller, 2 * MS, MS, 960)
    assert controller.delay_ns == 0


def test_a_probe_is_judged_against_the_median_p99_of_the_windows_before_it() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    for _ in range(3):  # the second window probes upwards; no gain: taken back
        clock.window(controller, 2 * MS, MS, 1000)
    # One window stretched past the target by a preempted thread: the home still meets it,
    # and a probe over the target loses, whatever its throughput.
    for latency in (2 * MS, 30 * MS, 2 * MS):
        clock.window(controller, latency, MS, 1000)
        if controller.delay_ns:
            break
    assert controller.delay_ns == controller.delays[1]
    clock.window(controller, 12 * MS, MS, 1500)
    assert controller.delay_ns == 0


def test_one_long_execution_in_a_window_does_not_shrink_the_cap() -> None:
    controller = SloController(10 * MS, 0, 32, 0)
    # A window over the target whose median batch runs briefly, one batch of ten preempted.
    for batch in range(10):
        execution = 8 * MS if batch == 0 else MS // 2
        controller.record([12 * MS] * 10, 10, execution, MIN_WINDOW_NS)
    assert controller.batch_cap == 32


def test_a_probe_is_judged_against_recent_windows_only() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 20 * MS, 32, clock.now)
    # No room to probe upwards (p99 at 90% of the target) while the load doubles.
    for rows in [1000] * 200 + [2000] * 2 * MAX_HOLD:
        clock.window(controller, 9 * MS, MS, rows)
    assert controller.delay_ns == 0
    # With room, a probe upwards that changes nothing (against the windows before the load
    # doubled it would look like a gain) is taken back.
    rungs = clock.run(controller, 2 * MAX_HOLD, lambda rung: 2000, 2 * MS)
    assert max(rungs) == 1
    assert rungs[-1] == 0


def test_a_gain_within_the_noise_of_the_home_windows_is_no_gain() -> None:
    def settles(rows_at_zero: list[int]) -> int:
        """The rung held most in the last 100 of 300 windows, where one rung up gives 1100
        and every other rung less, and delay 0 cycles through `rows_at_zero`."""
        clock = Clock()
        controller = SloController(10 * MS, 20 * MS, 32, clock.now)
        windows = iter(range(300))

        def serve(rung: int) -> tuple[int, int]:
            window = next(windows)
            rows = [rows_at_zero[window % len(rows_at_zero)], 1100][rung] if rung < 2 else 500
            return 2 * MS, rows

        rungs = clock.serve(controller, 300, serve)[-100:]
        return max(set(rungs), key=rungs.count)

    assert settles([1000]) == 1  # 10% is a gain on a quiet machine
    assert settles([700, 1300]) == 0  # not where the windows at home spread by 30%


def test_where_no_delay_meets_the_target_a_lower_p99_within_its_noise_is_no_gain() -> None:
    def settles(p99_at_zero: list[int]) -> int:
        """The rung held most in the last 100 of 300 windows, all at one throughput and over
        the target, where one rung up gives p99 8 ms and the windows at delay 0 cycle through
        `p99_at_zero`."""
        clock = Clock()
        controller = SloController(5 * MS, 20 * MS, 32, clock.now)
        at_zero = iter(range(300))

        def serve(rung: int) -> tuple[int, int]:
            if rung:
                return 8 * MS + rung, 3000
            return p99_at_zero[next(at_zero) % len(p99_at_zero)], 3000

        rungs = clock.serve(controller, 300, serve)[-100:]
        return max(set(rungs), key=rungs.count)

    assert settles([9 * MS]) == 1  # 11% lower is a gain where windows agree
    assert settles([9 * MS, 11 * MS]) == 0  # not where they differ by 20%
