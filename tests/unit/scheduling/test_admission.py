"""Admission to an iterative model's running batch: the `inferd.admission.` parameters are
read and checked at load, and the backlog honours priorities, `max_queue_size` and queue
timeouts as the dynamic batcher's queue does."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.model_config import parse_pbtxt
from inferd.core.types import Array
from inferd.scheduling.admission import admission_settings
from inferd.scheduling.dynamic_settings import BatchingSettings, QueuePolicy
from inferd.scheduling.iterative import IterativeBatcher
from tests.unit.scheduling.fakes import settings as batching_settings
from tests.unit.scheduling.test_iterative import Counter, iterative, steps
from tests.unit.scheduling.test_sequence import synchronous

ITERATIVE = """
name: "m"
max_batch_size: 4
input [ { name: "x", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "y", data_type: TYPE_INT32, dims: [ 1 ] } ]
sequence_batching { iterative_sequence: true }
"""


def parameters(**values: str) -> str:
    return "".join(
        f'parameters {{ key: "inferd.admission.{key}" value: {{ string_value: "{value}" }} }}\n'
        for key, value in values.items()
    )


def read(**values: str) -> BatchingSettings:
    return admission_settings(parse_pbtxt(ITERATIVE + parameters(**values)))


def test_without_parameters_admission_is_in_arrival_order() -> None:
    plain = read()
    assert plain.priority_levels == 0
    assert plain.policies == (QueuePolicy(),)
    assert plain.level_index({"priority": 5}) == 0  # ignored, as without priority levels


def test_parameters_are_read() -> None:
    settings = read(
        priority_levels="3",
        default_priority_level="2",
        max_queue_size="7",
        default_timeout_microseconds="5000",
        allow_timeout_override="true",
        timeout_action="delay",
    )
    policy = QueuePolicy(
        max_queue_size=7,
        default_timeout_ns=5_000_000,
        allow_timeout_override=True,
        delay_on_timeout=True,
    )
    assert settings.policies == (policy, policy, policy)
    assert settings.level_index({}) == 1
    assert settings.level_index({"priority": 1}) == 0
    with pytest.raises(InvalidArgument, match="out of range"):
        settings.level_index({"priority": 4})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"priority_levels": "-1"}, "priority_levels' must be a non-negative integer"),
        ({"priority_levels": "two"}, "priority_levels' must be a non-negative integer"),
        ({"priority_levels": "2"}, "default_priority_level 0 must be between 1 and"),
        (
            {"priority_levels": "2", "default_priority_level": "3"},
            "default_priority_level 3 must be between 1 and priority_levels",
        ),
        ({"max_queue_size": "1.5"}, "max_queue_size' must be a non-negative integer"),
        ({"default_timeout_microseconds": "-5"}, "must be a non-negative integer"),
        ({"allow_timeout_override": "maybe"}, "must be 'true' or 'false'"),
        ({"timeout_action": "DROP"}, "must be 'REJECT' or 'DELAY', got 'DROP'"),
        ({"max_queue": "3"}, r"unknown model parameters \['inferd.admission.max_queue'\]"),
    ],
)
def test_bad_parameters_fail_the_load(values: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        read(**values)


@pytest.mark.parametrize(
    "scheduling", ["dynamic_batching { }", "sequence_batching { }", ""], ids=str
)
def test_other_models_refuse_admission_parameters(scheduling: str) -> None:
    with pytest.raises(InvalidArgument, match="iterative sequence models only"):
        batching_settings(scheduling + parameters(max_queue_size="2"))


async def one_slot_busy(
    **admission: str,
) -> tuple[IterativeBatcher, Counter, threading.Event, asyncio.Task[dict[str, Array]]]:
    """A one-slot iterative model with these `inferd.admission.` parameters, its slot taken
    by request 1 (held at its step until the gate opens)."""
    gate = threading.Event()
    parameters = {f"inferd.admission.{key}": value for key, value in admission.items()}
    scheduler, backend = iterative(max_batch_size=0, gate=gate, parameters=parameters)
    running = asyncio.create_task(scheduler.submit(steps(1, sequence_id=1)))
    await asyncio.sleep(0.01)
    return scheduler, backend, gate, running


@synchronous
async def test_a_higher_priority_request_takes_the_next_free_slot() -> None:
    scheduler, backend, gate, running = await one_slot_busy(
        priority_levels="2", default_priority_level="2"
    )
    low = asyncio.create_task(scheduler.submit(steps(1, sequence_id=2)))
    await asyncio.sleep(0.01)
    high = asyncio.create_task(scheduler.submit(steps(1, sequence_id=3, priority=1)))
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(running, low, high)
    assert backend.steps == [[1], [3], [2]]
    await scheduler.stop()


@synchronous
async def test_a_full_level_refuses_and_a_timed_out_request_fails() -> None:
    scheduler, backend, gate, running = await one_slot_busy(
        max_queue_size="1", default_timeout_microseconds="20000"
    )
    waiting = asyncio.create_task(scheduler.submit(steps(1, sequence_id=2)))
    await asyncio.sleep(0)
    with pytest.raises(Unavailable, match="queue of model 'm' is full"):
        await scheduler.submit(steps(1, sequence_id=3))
    with pytest.raises(Unavailable, match="timed out in the queue"):
        await waiting
    assert scheduler.pending() == 0
    gate.set()
    await running
    assert await scheduler.submit(steps(1, sequence_id=2))  # its id and room are free again
    assert backend.steps == [[1], [2]]
    await scheduler.stop()


@synchronous
async def test_a_delayed_request_runs_after_the_requests_on_time() -> None:
    scheduler, backend, gate, running = await one_slot_busy(
        allow_timeout_override="true", timeout_action="DELAY"
    )
    late = asyncio.create_task(scheduler.submit(steps(1, sequence_id=2, timeout=1000)))
    on_time = asyncio.create_task(scheduler.submit(steps(1, sequence_id=3)))
    await asyncio.sleep(0.01)  # past the 1 ms timeout of `late`
    gate.set()
    await asyncio.gather(running, late, on_time)
    assert backend.steps == [[1], [3], [2]]
    await scheduler.stop()


def test_the_documented_example_loads() -> None:
    page = Path(__file__).parents[3] / "docs" / "streaming.md"
    text = page.read_text()
    start = text.index('name: "countdown_admitted"')
    example = admission_settings(parse_pbtxt(text[start : text.index("```", start)]))
    assert example.priority_levels == 2 and example.default_priority_level == 2
    assert example.policies[0] == QueuePolicy(
        max_queue_size=64, default_timeout_ns=30_000_000_000, allow_timeout_override=True
    )
