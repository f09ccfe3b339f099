"""The sequence batcher against a recording backend: slots, both strategies, control tensors,
implicit state, idle expiry and the backlog."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.errors import InstanceLost, InvalidArgument, Unavailable
from inferd.core.model_config import parse_pbtxt
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import ModelInstance
from inferd.scheduling.sequence import SequenceBatcher
from inferd.scheduling.sequence_settings import SequenceSettings

BOOL_CONTROLS = """
    { name: "START", control [ { kind: CONTROL_SEQUENCE_START, int32_false_true: [ 0, 1 ] } ] },
    { name: "END", control [ { kind: CONTROL_SEQUENCE_END, fp32_false_true: [ 0.5, 2.5 ] } ] },
    { name: "READY",
      control [ { kind: CONTROL_SEQUENCE_READY, bool_false_true: [ false, true ] } ] }
"""
CORRID = """,
    { name: "CORRID", control [ { kind: CONTROL_SEQUENCE_CORRID, data_type: TYPE_UINT64 } ] }
"""
STATE = """
  state [ { input_name: "S_IN", output_name: "S_OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""
CONTROLS = f"control_input [ {BOOL_CONTROLS} {CORRID} ] {STATE}"


def sequence_settings(
    strategy: str = "", max_batch_size: int = 4, extra: str = CONTROLS
) -> SequenceSettings:
    config = parse_pbtxt(
        f"""
        name: "m"
        max_batch_size: {max_batch_size}
        input [ {{ name: "x", data_type: TYPE_INT32, dims: [ 1 ] }} ]
        output [ {{ name: "y", data_type: TYPE_INT32, dims: [ 1 ] }} ]
        sequence_batching {{ {strategy} {extra} }}
        """
    )
    return SequenceSettings.from_config(config, Path("."))


class Accumulator:
    """y = S_OUT = S_IN + x. Records every batch's inputs, then refuses one with a negative x;
    `gate` holds executions back."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.batches: list[dict[str, Array]] = []

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append({name: array.copy() for name, array in inputs.items()})
        if (inputs["x"] < 0).any():
            raise InvalidArgument("x must not be negative")
        total = inputs["S_IN"] + inputs["x"]
        return {"y": total, "S_OUT": total}

    def close(self) -> None:
        pass


def batcher(settings: SequenceSettings, *backends: Accumulator) -> SequenceBatcher:
    instances = [
        ModelInstance(f"m_{i}", Device(DeviceKind.CPU), backend)
        for i, backend in enumerate(backends)
    ]
    scheduler = SequenceBatcher(instances, settings, ["y"])
    scheduler.start()
    return scheduler


def step(value: int, key: int | str | None, start: bool = False, end: bool = False) -> InferRequest:
    parameters: dict[str, Any] = {"sequence_start": start, "sequence_end": end}
    if key is not None:
        parameters["sequence_id"] = key
    return InferRequest("m", {"x": np.array([[value]], dtype=np.int32)}, parameters=parameters)


async def value(scheduler: SequenceBatcher, request: InferRequest) -> int:
    outputs = await scheduler.submit(request)
    assert list(outputs) == ["y"]  # the state output never reaches the client
    return int(outputs["y"][0, 0])


def synchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


# ---- settings -----------------------------------------------------------------------------


def test_settings_defaults_follow_triton() -> None:
    direct = sequence_settings()
    assert (direct.strategy, direct.slots_per_instance, direct.idle_ns) == ("direct", 4, 10**9)
    oldest = sequence_settings("oldest { max_candidate_sequences: 6 }")
    assert (oldest.strategy, oldest.slots_per_instance) == ("oldest", 6)
    assert sequence_settings("oldest { }", max_batch_size=0).slots_per_instance == 1
    # Triton ignores the direct delay unless a minimum slot utilization is set.
    assert sequence_settings("direct { max_queue_delay_microseconds: 9 }").max_queue_delay_ns == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('control_input [ { name: "A", control [ { kind: 7, int32_false_true: [0, 1] } ] } ]',
         "unknown control kind"),
        ('control_input [ { name: "x", control [ { kind: CONTROL_SEQUENCE_START, '
         "int32_false_true: [0, 1] } ] } ]", "also config inputs"),
        ('control_input [ { name: "A", control [ { kind: CONTROL_SEQUENCE_START, '
         "int32_false_true: [1] } ] } ]", "must hold [false, true]"),
        ('control_input [ { name: "A", control [ { kind: CONTROL_SEQUENCE_CORRID, '
         "int32_false_true: [0, 1] } ] } ]", "must set only data_type"),
        ('control_input [ { name: "A", control [ { kind: CONTROL_SEQUENCE_START, '
         "int32_false_true: [0, 1] }, { kind: CONTROL_SEQUENCE_END, int32_false_true: [0, 1] "
         "} ] } ]", "one tensor carries exactly one"),
        ('control_input [ { name: "A", control [ { kind: CONTROL_SEQUENCE_START, '
         'int32_false_true: [0, 1] } ] }, { name: "B", control [ { kind: CONTROL_SEQUENCE_START, '
         "bool_false_true: [false, true] } ] } ]", "more than one tensor"),
        ('state [ { input_name: "S", output_name: "T", data_type: TYPE_FP32, dims: [ -1 ] } ]',
         "variable dims"),
        ('state [ { input_name: "S", output_name: "y", data_type: TYPE_FP32, dims: [ 2 ] } ]',
         "not config outputs"),
        ('state [ { input_name: "S", output_name: "T", data_type: TYPE_FP32, dims: [ 2 ], '
         "initial_state { data_type: TYPE_FP32, dims: [ 3 ], zero_data: true } } ]",
         "do not fit"),
        ("oldest { preferred_batch_size: [ 9 ] }", "between 1 and max_batch_size"),
    ],
)  # fmt: skip
def test_settings_refuse_bad_configs(extra: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[")):
        sequence_settings(extra=extra)


def test_initial_state_from_data_file(tmp_path: Path) -> None:
    (tmp_path / "initial_state").mkdir()
    np.array([7, 8], dtype=np.int32).tofile(tmp_path / "initial_state" / "init.bin")
    config = parse_pbtxt(
        """
        name: "m" max_batch_size: 0
        input [ { name: "x", data_type: TYPE_INT32, dims: [ 2 ] } ]
        output [ { name: "y", data_type: TYPE_INT32, dims: [ 2 ] } ]
        sequence_batching { state [ { input_name: "S_IN", output_name: "S_OUT",
          data_type: TYPE_INT32, dims: [ -1 ], initial_state { data_type: TYPE_INT32,
          dims: [ 2 ], data_file: "init.bin" } } ] }
        """
    )
    settings = SequenceSettings.from_config(config, tmp_path)
    assert settings.states[0].initial.tolist() == [7, 8]


# ---- scheduling ---------------------------------------------------------------------------


@synchronous
async def test_state_carries_over_restarts_and_is_dropped_at_end() -> None:
    scheduler = batcher(sequence_settings(), Accumulator())
    assert [await value(scheduler, step(v, 5, start=v == 1)) for v in (1, 2, 3)] == [1, 3, 6]
    assert await value(scheduler, step(10, 5, start=True)) == 10  # a restart resets the state
    assert await value(scheduler, step(1, 5, end=True)) == 11
    with pytest.raises(InvalidArgument, match="START flag"):
        await scheduler.submit(step(1, 5))
    assert await value(scheduler, step(4, 5, start=True, end=True)) == 4
    await scheduler.stop()


@synchronous
async def test_direct_batch_rows_are_slots_with_control_values() -> None:
    gate = threading.Event()
    backend = Accumulator(gate)
    scheduler = batcher(sequence_settings(), backend)
    first = asyncio.create_task(scheduler.submit(step(1, 100, start=True)))  # slot 0
    await asyncio.sleep(0.05)  # executing, held by the gate
    others = [
        asyncio.create_task(scheduler.submit(step(2, 101, start=True))),  # slot 1
        asyncio.create_task(scheduler.submit(step(3, 102, start=True))),  # slot 2
        asyncio.create_task(scheduler.submit(step(5, 100, end=True))),  # slot 0, ends
    ]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, *others)
    # 101 ends its turn only in a later batch, so slot 1 is padding while 102 runs again.
    last = asyncio.create_task(scheduler.submit(step(4, 102, end=True)))
    assert await last == {"y": np.array([[7]], dtype=np.int32)}
    batch = backend.batches[1]
    assert batch["x"][:, 0].tolist() == [5, 2, 3]
    assert batch["START"][:, 0].tolist() == [0, 1, 1]
    assert batch["START"].shape == (3, 1) and batch["START"].dtype == np.int32
    assert batch["END"][:, 0].tolist() == [2.5, 0.5, 0.5]
    assert batch["READY"][:, 0].tolist() == [True, True, True]
    assert batch["CORRID"][:, 0].tolist() == [100, 101, 102]
    assert batch["CORRID"].dtype == np.uint64
    assert batch["S_IN"][:, 0].tolist() == [1, 0, 0]
    padded = backend.batches[2]  # 102 alone, in slot 2: slots 0 and 1 are padding rows
    assert padded["READY"][:, 0].tolist() == [False, False, True]
    assert padded["CORRID"][:, 0].tolist() == [0, 0, 102]
    assert padded["S_IN"][:, 0].tolist() == [0, 0, 3]
    await scheduler.stop()


@synchronous
async def test_direct_lowest_slot_leads_and_other_shapes_are_padding() -> None:
    # Triton's rule (qa/L0_sequence_batcher test_ragged_batch): the batch spans every ready slot;
    # the lowest ready slot's shapes lead, even when a higher slot's step is older.
    gate = threading.Event()
    backend = Accumulator(gate)
    scheduler = batcher(sequence_settings(), backend)
    first = asyncio.create_task(scheduler.submit(step(1, 1, start=True)))  # slot 0, runs
    await asyncio.sleep(0.05)  # executing, held by the gate
    wide = step(2, 2, start=True)  # slot 1, two columns: the oldest step waiting
    wide.inputs["x"] = np.array([[2, 2]], dtype=np.int32)
    waiting = [
        asyncio.create_task(scheduler.submit(wide)),
        asyncio.create_task(scheduler.submit(step(5, 1, end=True))),  # slot 0
        asyncio.create_task(scheduler.submit(step(3, 3, start=True, end=True))),  # slot 2
    ]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, *waiting)
    assert [b["CORRID"][:, 0].tolist() for b in backend.batches[1:]] == [[1, 0, 3], [0, 2]]
    assert backend.batches[1]["READY"][:, 0].tolist() == [True, False, True]
    await scheduler.stop()


@synchronous
async def test_new_sequences_spread_over_instances() -> None:
    backends = Accumulator(), Accumulator()
    scheduler = batcher(sequence_settings(), *backends)
    await asyncio.gather(*(scheduler.submit(step(1, key, start=True)) for key in (1, 2, 3, 4)))
    assert sum(len(b.batches) for b in backends) >= 2
    assert all(b.batches for b in backends)
    await scheduler.stop()


@synchronous
async def test_oldest_takes_one_request_per_sequence_per_batch() -> None:
    gate = threading.Event()
    backend = Accumulator(gate)
    scheduler = batcher(sequence_settings("oldest { max_candidate_sequences: 4 }"), backend)
    held = asyncio.create_task(scheduler.submit(step(1, 7, start=True)))
    await asyncio.sleep(0.05)
    queued = [
        asyncio.create_task(scheduler.submit(step(2, 7))),
        asyncio.create_task(scheduler.submit(step(3, 7))),
        asyncio.create_task(scheduler.submit(step(10, 8, start=True))),
    ]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(held, *queued)
    assert [int(r["y"][0, 0]) for r in results] == [1, 3, 6, 10]
    assert [b["CORRID"][:, 0].tolist() for b in backend.batches] == [[7], [7, 8], [7]]
    assert all(b["READY"].all() for b in backend.batches)  # oldest never pads
    await scheduler.stop()


@synchronous
async def test_oldest_waits_for_a_preferred_batch_until_the_delay() -> None:
    settings = sequence_settings(
        "oldest { preferred_batch_size: [ 2 ], max_queue_delay_microseconds: 200000 }"
    )
    backend = Accumulator()
    scheduler = batcher(settings, backend)
    first = asyncio.create_task(scheduler.submit(step(1, 1, start=True)))
    await asyncio.sleep(0.05)
    assert not backend.batches  # waiting for a second sequence
    await scheduler.submit(step(2, 2, start=True))
    await first
    assert [b["CORRID"][:, 0].tolist() for b in backend.batches] == [[1, 2]]
    await scheduler.stop()


@synchronous
async def test_idle_sequence_releases_its_slot_to_the_backlog() -> None:
    settings = sequence_settings(
        extra=CONTROLS + " max_sequence_idle_microseconds: 100000", max_batch_size=0
    )
    backend = Accumulator()
    scheduler = batcher(settings, backend)  # one slot
    assert await value(scheduler, step(1, 1, start=True)) == 1
    waiting = asyncio.create_task(scheduler.submit(step(2, 2, start=True)))
    await asyncio.sleep(0.03)
    assert not waiting.done()  # in the backlog
    assert scheduler.pending() == 1
    await asyncio.wait_for(waiting, 1)  # sequence 1 idled out after 100 ms
    with pytest.raises(InvalidArgument, match="sequence 1 to model 'm' must specify the START"):
        await scheduler.submit(step(1, 1))
    assert backend.batches[-1]["START"].shape == (1,)  # no batch axis
    await scheduler.stop()


@synchronous
async def test_backlog_limit_and_stop_answer_unavailable() -> None:
    settings = sequence_settings(
        extra=CONTROLS + '} parameters { key: "inferd.max_sequence_backlog" '
        'value: { string_value: "1" }',
        max_batch_size=0,
    )
    scheduler = batcher(settings, Accumulator())
    await scheduler.submit(step(1, 1, start=True))
    waiting = asyncio.create_task(scheduler.submit(step(1, 2, start=True)))
    await asyncio.sleep(0.01)
    with pytest.raises(Unavailable, match="retry later"):
        await scheduler.submit(step(1, 3, start=True))
    assert await value(scheduler, step(1, 1)) == 2  # the running sequence is unaffected
    await scheduler.stop()
    with pytest.raises(Unavailable, match="unloaded"):
        await waiting


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (step(1, None, start=True), "non-zero or non-empty correlation ID"),
        (step(1, 0, start=True), "non-zero or non-empty correlation ID"),
        (step(1, "abc", start=True), "takes unsigned integer sequence ids"),
        (step(1, 2**64, start=True), "out of range"),
    ],
)
@synchronous
async def test_bad_ids_are_refused(request_: InferRequest, message: str) -> None:
    scheduler = batcher(sequence_settings(), Accumulator())
    with pytest.raises(InvalidArgument, match=message):
        await scheduler.submit(request_)
    await scheduler.stop()


@synchronous
async def test_string_ids_without_corrid_are_their_own_sequences() -> None:
    without_corrid = f"control_input [ {BOOL_CONTROLS} ] {STATE}"
    scheduler = batcher(sequence_settings(extra=without_corrid), Accumulator())
    assert await value(scheduler, step(1, "1", start=True)) == 1
    assert await value(scheduler, step(5, 1, start=True)) == 5
    assert await value(scheduler, step(1, "1")) == 2
    await scheduler.stop()


@pytest.mark.parametrize(
    ("strategy", "ready"),
    [
        ("direct { }", [[1, 1, 1], [1], [0, 1], [0, 0, 1]]),  # alone, still in its slot's row
        ("oldest { max_candidate_sequences: 4 }", [[1, 1, 1], [1], [1], [1]]),
    ],
)
@synchronous
async def test_a_refused_row_fails_alone_and_other_states_advance(
    strategy: str, ready: list[list[int]]
) -> None:
    gate = threading.Event()
    backend = Accumulator(gate)
    scheduler = batcher(sequence_settings(strategy), backend)
    held = asyncio.create_task(value(scheduler, step(1, 1, start=True)))  # slot 0
    await asyncio.sleep(0.05)  # executing, held by the gate
    steps = [
        asyncio.create_task(value(scheduler, step(2, 1))),
        asyncio.create_task(value(scheduler, step(-1, 2, start=True))),  # slot 1, refused
        asyncio.create_task(value(scheduler, step(10, 3, start=True))),  # slot 2
    ]
    await asyncio.sleep(0.01)
    gate.set()
    assert await held == 1
    assert await steps[0] == 3
    with pytest.raises(InvalidArgument, match="must not be negative"):
        await steps[1]
    assert await steps[2] == 10
    assert [b["READY"][:, 0].astype(int).tolist() for b in backend.batches[1:]] == ready
    assert await value(scheduler, step(5, 3, end=True)) == 15
    assert await value(scheduler, step(4, 1, end=True)) == 7
    await scheduler.stop()


@synchronous
async def test_a_cancelled_queued_step_never_runs() -> None:
    gate = threading.Event()
    scheduler = batcher(sequence_settings(max_batch_size=0), Accumulator(gate))
    running = asyncio.create_task(scheduler.submit(step(1, 1, start=True)))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(scheduler.submit(step(10, 1)))  # behind its own sequence
    backlogged = asyncio.create_task(scheduler.submit(step(100, 2, start=True)))  # no slot
    await asyncio.sleep(0.01)
    assert scheduler.pending() == 2
    queued.cancel()
    backlogged.cancel()
    await asyncio.sleep(0)
    assert scheduler.pending() == 0
    gate.set()
    await running
    assert await value(scheduler, step(1000, 1, end=True)) == 1001  # the 10 never ran
    # Sequence 2 never started: its slot is free for a new one, which starts from scratch.
    with pytest.raises(InvalidArgument, match="START"):
        await scheduler.submit(step(1, 2))
    assert await value(scheduler, step(5, 3, start=True, end=True)) == 5
    await scheduler.stop()


class LosingAccumulator(Accumulator):
    """An accumulator whose process goes away in a batch holding x == 99."""

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        if (inputs["x"] == 99).any():
            raise InstanceLost("instance m_0 stopped")
        return super().execute(inputs, output_names, requests)


@synchronous
async def test_a_lost_instance_ends_every_sequence_it_held() -> None:
    scheduler = batcher(sequence_settings(), LosingAccumulator())
    assert await value(scheduler, step(1, 1, start=True)) == 1
    assert await value(scheduler, step(2, 2, start=True)) == 2
    with pytest.raises(InstanceLost):
        await value(scheduler, step(99, 1))
    for key in (1, 2):  # the one that was running and the one that was idle: both gone
        with pytest.raises(InvalidArgument, match="must specify the START flag"):
            await value(scheduler, step(3, key))
    assert await value(scheduler, step(5, 1, start=True)) == 5  # a new sequence starts afresh
    await scheduler.stop()
