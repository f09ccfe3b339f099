"""Implicit state held by the instance (as a cluster host holds it) rather than the sequence
batcher: the same answers as state kept in the scheduler, no state in the batches that reach
the instance, states dropped when their sequences end or are released, and a continuing step
whose state the instance lost never fed the initial state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest

from inferd.backends.base import BatchOutputs, BatchRequest, Device, DeviceKind
from inferd.core.errors import InstanceLost, InvalidArgument
from inferd.core.types import Array
from inferd.instances.instance import ExecutionResult, ModelInstance
from inferd.scheduling.held_states import (
    END,
    START,
    STATE_ROWS,
    HostedStates,
    can_hold,
    state_holder,
)
from inferd.scheduling.rate_limiter import Gate, RateLimiter
from inferd.scheduling.sequence import SequenceBatcher
from inferd.scheduling.sequence_settings import SequenceSettings
from tests.unit.scheduling.test_sequence import (
    CONTROLS,
    Accumulator,
    sequence_settings,
    step,
    synchronous,
    value,
)


class Holding:
    """An instance that keeps its sequences' states, as a cluster host does: `HostedStates`
    around an `Accumulator`, run on the event loop's thread. Records what reached it."""

    pipeline_depth = 1
    holds_states = True

    def __init__(self, settings: SequenceSettings) -> None:
        self.name = "m_0"
        self.device = Device(DeviceKind.CPU)
        self.states = HostedStates(settings)
        self.backend = Accumulator()
        self.received: list[tuple[set[str], list[str]]] = []
        self.forgotten: list[int] = []

    async def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        started: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        self.received.append((set(inputs), list(output_names)))
        fed = dict(inputs)
        rows = self.states.feed(fed)
        assert rows is not None
        names = [*output_names, *self.states.state_outputs]
        outputs = self.backend.execute(fed, names, requests)
        return ExecutionResult(self.states.keep(rows, outputs), 0, 0)

    def forget_state(self, slot: int) -> None:
        self.forgotten.append(slot)
        self.states.forget([slot])

    def close(self) -> None:
        pass


def holding_batcher(settings: SequenceSettings) -> tuple[Holding, SequenceBatcher]:
    instance = Holding(settings)
    scheduler = SequenceBatcher([instance], settings, ["y"])
    scheduler.start()
    return instance, scheduler


@pytest.mark.parametrize("strategy", ["direct { }", "oldest { max_candidate_sequences: 4 }"])
@synchronous
async def test_interleaved_sequences_add_up_with_no_state_reaching_the_instance(
    strategy: str,
) -> None:
    settings = sequence_settings(strategy)
    instance, scheduler = holding_batcher(settings)
    sums = dict.fromkeys(range(1, 5), 0)  # one slot each
    for round_ in range(5):
        requests = [step(key * 10 + round_, key, round_ == 0, round_ == 4) for key in sums]
        answers = await asyncio.gather(*(value(scheduler, r) for r in requests))
        for key, answer in zip(sums, answers, strict=True):
            sums[key] += key * 10 + round_
            assert answer == sums[key]
    assert len(instance.received) >= 5
    for inputs, output_names in instance.received:
        assert STATE_ROWS in inputs and "S_IN" not in inputs
        assert output_names == ["y"]
    assert {"S_IN", "START", "CORRID"} <= set(instance.backend.batches[0])
    assert len(instance.states) == 0  # every sequence ended
    assert instance.forgotten == []  # each END dropped its own state
    await scheduler.stop()


@synchronous
async def test_a_refused_row_fails_alone_and_the_other_states_advance() -> None:
    settings = sequence_settings()
    instance, scheduler = holding_batcher(settings)
    assert await value(scheduler, step(1, 1, start=True)) == 1
    assert await value(scheduler, step(1, 2, start=True)) == 1
    steps = [value(scheduler, step(2, 1)), value(scheduler, step(-1, 2))]
    answers = await asyncio.gather(*steps, return_exceptions=True)
    assert answers[0] == 3 and isinstance(answers[1], InvalidArgument)
    assert await value(scheduler, step(5, 2, end=True)) == 6  # its state did not move
    assert len(instance.states) == 1
    await scheduler.stop()


@synchronous
async def test_a_sequence_released_without_its_end_has_its_state_forgotten() -> None:
    settings = sequence_settings(extra=CONTROLS + " max_sequence_idle_microseconds: 50000")
    instance, scheduler = holding_batcher(settings)
    assert await value(scheduler, step(4, 1, start=True)) == 4
    assert len(instance.states) == 1
    await asyncio.sleep(0.2)  # idled out
    assert instance.forgotten == [0] and len(instance.states) == 0
    with pytest.raises(InvalidArgument, match="START"):
        await scheduler.submit(step(1, 1))
    # An END step that fails is dropped by the scheduler's release too.
    assert await value(scheduler, step(4, 2, start=True)) == 4
    with pytest.raises(InvalidArgument):
        await scheduler.submit(step(-1, 2, end=True))
    assert instance.forgotten == [0, 0] and len(instance.states) == 0
    await scheduler.stop()


@synchronous
async def test_an_instance_that_lost_the_state_loses_the_sequence_not_restarts_it() -> None:
    settings = sequence_settings()
    instance, scheduler = holding_batcher(settings)
    assert await value(scheduler, step(3, 1, start=True)) == 3
    instance.states = HostedStates(settings)  # as a restarted host: it holds nothing
    with pytest.raises(InstanceLost, match="holds no state"):
        await value(scheduler, step(1, 1))
    with pytest.raises(InvalidArgument, match="START"):
        await value(scheduler, step(1, 1))
    assert await value(scheduler, step(2, 1, start=True)) == 2
    assert len(instance.backend.batches) == 2  # the lost step never ran
    await scheduler.stop()


def rows(*pairs: tuple[int, int]) -> dict[str, Array]:
    return {"x": np.ones((len(pairs), 1), np.int32), STATE_ROWS: np.array(pairs, np.int64)}


def test_padding_rows_get_zeros_and_keep_nothing() -> None:
    settings = sequence_settings()
    states = HostedStates(settings)
    inputs = rows((0, START), (-1, 0), (2, START))
    fed = states.feed(inputs)
    assert fed is not None and STATE_ROWS not in inputs
    assert inputs["S_IN"].tolist() == [[0], [0], [0]]
    kept = states.keep(fed, {"y": np.array([[1], [0], [3]]), "S_OUT": np.array([[1], [9], [3]])})
    assert isinstance(kept, dict) and list(kept) == ["y"]
    inputs = rows((2, 0), (0, END))
    fed = states.feed(inputs)
    assert fed is not None and inputs["S_IN"].tolist() == [[3], [1]]
    states.keep(fed, {"y": np.array([[4], [2]]), "S_OUT": np.array([[4], [2]], np.int32)})
    assert len(states) == 1 and states.held_bytes() == 4


def test_answers_per_request_keep_the_rows_that_succeeded() -> None:
    settings = sequence_settings()
    states = HostedStates(settings)
    fed = states.feed(rows((0, START), (1, START)))
    assert fed is not None
    answers: BatchOutputs = [
        {"y": np.array([[5]]), "S_OUT": np.array([[5]])},
        InvalidArgument("refused"),
    ]
    kept = states.keep(fed, answers)
    assert isinstance(kept, list) and list(kept[0]) == ["y"]  # type: ignore[arg-type]
    inputs = rows((0, 0), (1, 0))
    states.feed(inputs)
    assert inputs["S_IN"].tolist() == [[5], [0]]  # slot 1 holds its initial state


def test_a_missing_state_output_fails_the_batch() -> None:
    states = HostedStates(sequence_settings())
    fed = states.feed(rows((0, START)))
    assert fed is not None
    with pytest.raises(Exception, match="did not return its state output 'S_OUT'"):
        states.keep(fed, {"y": np.array([[1]])})


def test_an_unbatched_model_holds_its_one_row() -> None:
    settings = sequence_settings(max_batch_size=0)
    states = HostedStates(settings)
    inputs: dict[str, Array] = {"x": np.ones(1, np.int32), STATE_ROWS: np.array([[0, START]])}
    fed = states.feed(inputs)
    assert fed is not None and inputs["S_IN"].tolist() == [0]
    states.keep(fed, {"y": np.array([7]), "S_OUT": np.array([7])})
    inputs = {"x": np.ones(1, np.int32), STATE_ROWS: np.array([[0, 0]])}
    states.feed(inputs)
    assert inputs["S_IN"].tolist() == [7]


def test_held_only_fixed_shapes_without_a_clashing_input_and_a_gate_is_seen_through() -> None:
    settings = sequence_settings()
    assert can_hold(settings, ["x"])
    assert not can_hold(settings, ["x", STATE_ROWS])  # the model's own input has the name
    assert not can_hold(sequence_settings(extra=CONTROLS.split("state")[0]), ["x"])  # no state
    initial = 'initial_state { data_type: TYPE_INT32, dims: [ 1 ], zero_data: true, name: "z" }'
    growing = CONTROLS.replace("dims: [ 1 ]", f"dims: [ -1 ] {initial}")
    assert not can_hold(sequence_settings(extra=growing), ["x"])
    holding = Holding(settings)
    limiter = RateLimiter()
    assert state_holder(Gate(holding, limiter, (), 0)) is holding
    local = ModelInstance("m_0", Device(DeviceKind.CPU), Accumulator())
    assert state_holder(local) is None
    local.close()
    holding.holds_states = False  # a model whose states its scheduler keeps
    assert state_holder(holding) is None
