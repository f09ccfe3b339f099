"""The SLO controller on synthetic windows of latencies."""

from __future__ import annotations

from inferd.scheduling.adaptive import MIN_SAMPLES, MIN_WINDOW_NS, SloController

MS = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def window(self, controller: SloController, latency: int, execution: int, rows: int) -> None:
        """Feed one full window of equal batches; `rows` requests finish per window."""
        self.now += MIN_WINDOW_NS
        controller.record([latency] * MIN_SAMPLES, rows, execution, self.now)


def test_delay_grows_while_latency_has_room_up_to_the_ceiling() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 4 * MS, 32, clock.now)
    assert (controller.delay_ns, controller.batch_cap) == (0, 32)
    for _ in range(30):
        clock.window(controller, 2 * MS, MS, 1000)
    assert controller.delay_ns == 4 * MS


def test_violations_halve_the_delay() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 0, 32, clock.now)  # ceiling: half the target
    for _ in range(20):
        clock.window(controller, 2 * MS, MS, 1000)
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


def test_a_delay_step_that_costs_throughput_is_taken_back() -> None:
    clock = Clock()
    controller = SloController(10 * MS, 0, 32, clock.now)
    clock.window(controller, 2 * MS, MS, 1000)
    assert controller.delay_ns > 0
    clock.window(controller, 3 * MS, MS, 500)  # closed-loop clients: waiting halved throughput
    assert controller.delay_ns == 0


def test_a_window_needs_enough_requests_and_enough_time() -> None:
    few = SloController(10 * MS, 0, 32, 0)
    few.record([MS] * (MIN_SAMPLES - 1), 99, MS, 10 * MIN_WINDOW_NS)
    assert few.delay_ns == 0
    brief = SloController(10 * MS, 0, 32, 0)
    brief.record([MS] * MIN_SAMPLES, 100, MS, MIN_WINDOW_NS // 2)
    assert brief.delay_ns == 0
    brief.record([MS], 1, MS, MIN_WINDOW_NS)
    assert brief.delay_ns > 0
