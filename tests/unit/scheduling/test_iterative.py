"""The iterative batcher against a counting backend: requests join and leave the running batch
between steps, state stays with each request, the backlog, cancellation, unloading and bad
requests."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.errors import InvalidArgument, ModelExecutionError, Unavailable
from inferd.core.model_config import parse_pbtxt
from inferd.core.responses import MAX_UNREAD, ResponseChannel
from inferd.core.types import Array, InferRequest
from inferd.instances.instance import ExecutionResult, Instance, ModelInstance
from inferd.scheduling.iterative import IterativeBatcher
from inferd.scheduling.sequence_settings import SequenceSettings
from tests.unit.scheduling.test_sequence import CORRID, STATE, sequence_settings, synchronous


class Counter:
    """y = S_OUT = S_IN + 1: one more step made; a request is handed back until y reaches its
    x. Records each step's CORRID values; `gate` holds executions back."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.steps: list[list[int]] = []

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        if self.gate is not None:
            self.gate.wait(10)
        self.steps.append([int(key) for key in inputs["CORRID"].reshape(-1)])
        count = inputs["S_IN"] + 1  # [rows, 1], or [1] without a batch axis
        made, wanted = count.reshape(-1), inputs["x"].reshape(-1)
        for row, request in enumerate(requests):
            self.mark(request, bool(made[row] < wanted[row]))
        return {"y": count, "S_OUT": count}

    def mark(self, request: BatchRequest, again: bool) -> None:
        """Hand `request` back for another step, or not."""
        request.rescheduled = again

    def close(self) -> None:
        pass


class Tally(Counter):
    """A Counter without implicit state (S_IN, S_OUT): it keeps each running request's count
    itself, by correlation id, as a model that holds its requests' state in its own memory;
    `talks`: each step also sends the count to the request's channel, the final response with
    its last step."""

    def __init__(self, talks: bool = False) -> None:
        super().__init__()
        self.talks = talks
        self.made: dict[int, int] = {}

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        keys = [int(key) for key in inputs["CORRID"].reshape(-1)]
        self.steps.append(keys)
        counts = []
        for key, wanted, request in zip(keys, inputs["x"][:, 0], requests, strict=True):
            count = self.made.pop(key, 0) + 1
            request.rescheduled = bool(count < wanted)
            if request.rescheduled:
                self.made[key] = count
            if self.talks:
                assert request.responses is not None
                y = np.array([count], dtype=np.int32)
                request.responses.send({"y": y}, final=not request.rescheduled)
            counts.append(count)
        return {"y": np.array(counts, dtype=np.int32).reshape(-1, 1)}


def iterative(
    max_batch_size: int = 4,
    gate: threading.Event | None = None,
    parameters: Mapping[str, str] | None = None,
    backend: Counter | None = None,
    wrap: Callable[[ModelInstance], Instance] = lambda instance: instance,
) -> tuple[IterativeBatcher, Counter]:
    """`parameters`: the model's config `parameters`; `backend`: a Counter of another kind (a
    `Tally`: a model without implicit state); `wrap`: what the scheduler runs in place of the
    backend's instance."""
    state = "" if isinstance(backend, Tally) else STATE
    controls = f"iterative_sequence: true, control_input [ {CORRID.lstrip(',')} ] {state}"
    entries = " ".join(
        f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}'
        for key, value in (parameters or {}).items()
    )
    if entries:  # after sequence_batching's brace; the template's closing brace ends the last
        controls += "} " + entries[:-1]
    settings = sequence_settings(max_batch_size=max_batch_size, extra=controls)
    backend = backend or Counter(gate)
    scheduler = IterativeBatcher(
        [wrap(ModelInstance("m_0", Device(DeviceKind.CPU), backend))], settings, ["y"]
    )
    scheduler.start()
    return scheduler, backend


def steps(count: int, **parameters: object) -> InferRequest:
    return InferRequest("m", {"x": np.array([[count]], dtype=np.int32)}, parameters=parameters)


@synchronous
@pytest.mark.parametrize("kind", [Counter, Tally])
async def test_a_later_short_request_joins_the_running_batch_and_finishes_first(
    kind: type[Counter],
) -> None:
    # With implicit state, and without: then a step of the same requests as the one before
    # is taken without a look at every slot, as long as no other step was queued meanwhile.
    scheduler, backend = iterative(backend=kind())
    finished: list[int] = []

    async def run(count: int) -> None:
        outputs = await scheduler.submit(steps(count))
        assert list(outputs) == ["y"] and int(outputs["y"][0, 0]) == count  # its own state
        finished.append(count)

    long = asyncio.create_task(run(5000))
    await asyncio.sleep(0.01)
    await asyncio.gather(run(3), run(5), long)
    assert finished == [3, 5, 5000]
    seen = backend.steps
    assert max(len(step) for step in seen) == 3  # three requests in one step
    assert len({key for step in seen for key in step}) == 3  # a fresh correlation id each
    await scheduler.stop()


@synchronous
async def test_requests_beyond_the_running_batch_wait_in_the_backlog() -> None:
    gate = threading.Event()
    scheduler, backend = iterative(max_batch_size=0, gate=gate)
    first = asyncio.create_task(scheduler.submit(steps(2)))
    second = asyncio.create_task(scheduler.submit(steps(2)))
    await asyncio.sleep(0.01)
    assert scheduler.pending() == 1  # the second waits for the only slot
    gate.set()
    await asyncio.gather(first, second)
    assert [len(step) for step in backend.steps] == [1, 1, 1, 1]
    await scheduler.stop()


@synchronous
async def test_a_cancelled_request_stops_and_frees_its_slot() -> None:
    scheduler, backend = iterative(max_batch_size=0)
    forever = asyncio.create_task(scheduler.submit(steps(10**9)))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(scheduler.submit(steps(2)))
    await asyncio.sleep(0.01)
    forever.cancel()
    outputs = await asyncio.wait_for(waiting, 10)
    assert int(outputs["y"].reshape(-1)[0]) == 2
    keys = [step[0] for step in backend.steps]
    assert keys[0] not in keys[-2:]  # the last two steps are the waiting request's
    await scheduler.stop()


@synchronous
async def test_unloading_fails_running_and_waiting_requests() -> None:
    scheduler, _ = iterative(max_batch_size=0)
    running = asyncio.create_task(scheduler.submit(steps(10**9)))
    waiting = asyncio.create_task(scheduler.submit(steps(1)))
    await asyncio.sleep(0.05)
    await scheduler.stop()
    for task in (running, waiting):
        with pytest.raises(Unavailable, match="unloaded"):
            await task
    with pytest.raises(Unavailable, match="unloaded"):
        await scheduler.submit(steps(1))


@synchronous
async def test_bad_requests_are_refused() -> None:
    gate = threading.Event()
    scheduler, _ = iterative(gate=gate)
    two_rows = InferRequest("m", {"x": np.array([[1], [2]], dtype=np.int32)})
    with pytest.raises(InvalidArgument, match="batch-size 1"):
        await scheduler.submit(two_rows)
    named = asyncio.create_task(scheduler.submit(steps(1, sequence_id=7)))
    await asyncio.sleep(0.01)
    with pytest.raises(InvalidArgument, match="still running"):
        await scheduler.submit(steps(1, sequence_id=7))
    gate.set()
    await named
    await scheduler.stop()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


class Talker(Counter):
    """A decoupled Counter: each step also sends the count so far to the request's channel,
    the final response with its last step."""

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        outputs = super().execute(inputs, output_names, requests)
        for row, request in enumerate(requests):
            assert request.responses is not None
            request.responses.send({"y": outputs["y"][row]}, final=not request.rescheduled)
        return outputs


class Failing(Counter):
    """A Counter whose second step of a request of 13 steps raises `error`."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        if any(x == 13 and made == 1 for x, made in zip(inputs["x"], inputs["S_IN"], strict=True)):
            raise self.error
        return super().execute(inputs, output_names, requests)


@synchronous
async def test_each_steps_responses_reach_the_reader_in_order_the_final_last() -> None:
    scheduler, _ = iterative(backend=Talker())

    async def run(count: int) -> list[tuple[int, bool]]:
        request = steps(count)
        channel = request.responses = ResponseChannel()
        execution = asyncio.ensure_future(scheduler.submit(request))
        received = []
        while not received or not received[-1][1]:
            item = await asyncio.wait_for(channel.get(), 10)
            assert item.outputs is not None
            received.append((int(item.outputs["y"].reshape(-1)[0]), item.final))
        await execution
        return received

    counts = (3, 40, 7)
    for count, received in zip(counts, await asyncio.gather(*map(run, counts)), strict=True):
        assert received == [(made, made == count) for made in range(1, count + 1)]
    await scheduler.stop()


class Awaiting(Talker):
    """A Talker whose every step but a request's first waits (10 s at most) until the reader
    has taken the response before; `had` records, for each, whether it had."""

    def __init__(self) -> None:
        super().__init__()
        self.taken = threading.Event()  # set by the reader as it takes each response
        self.had: list[bool] = []

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        if inputs["S_IN"].reshape(-1)[0] > 0:
            self.had.append(self.taken.wait(10))
            self.taken.clear()
        return super().execute(inputs, output_names, requests)


async def read_to_the_end(channel: ResponseChannel, taken: threading.Event) -> list[int]:
    """Each response's y, in order, until the final one; `taken` is set at each."""
    received: list[int] = []
    while True:
        item = await asyncio.wait_for(channel.get(), 30)
        taken.set()
        assert item.outputs is not None
        received.append(int(item.outputs["y"].reshape(-1)[0]))
        if item.final:
            return received


@synchronous
async def test_a_steps_responses_reach_the_reader_while_the_next_step_runs() -> None:
    """Held while their step runs, and released as the next step starts on the instance (its
    thread says so), not once it ended."""
    backend = Awaiting()
    scheduler, _ = iterative(backend=backend)
    request = steps(3)
    request.responses = ResponseChannel()
    execution = asyncio.ensure_future(scheduler.submit(request))
    assert await read_to_the_end(request.responses, backend.taken) == [1, 2, 3]
    await execution
    assert backend.had == [True, True]
    await scheduler.stop()


class Refusing:
    """A model instance that refuses a request's second step before starting it (as one whose
    resources cannot be had), and runs every other step on `inner`."""

    def __init__(self, inner: ModelInstance) -> None:
        self.name = inner.name
        self.device = inner.device
        self.pipeline_depth = inner.pipeline_depth
        self.inner = inner

    async def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        started: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        if inputs["S_IN"].reshape(-1)[0] == 1:
            raise Unavailable("refused before it started")
        return await self.inner.execute(inputs, output_names, requests, started)

    def close(self) -> None:
        self.inner.close()


@synchronous
async def test_a_stream_whose_next_step_never_started_reaches_its_end() -> None:
    """The holds of the step before are released all the same, so the stream's error (sent
    as the engine does, once the request failed) reaches the reader."""
    scheduler, _ = iterative(backend=Talker(), wrap=Refusing)
    request = steps(3)
    channel = request.responses = ResponseChannel()
    execution = asyncio.ensure_future(scheduler.submit(request))
    first = await asyncio.wait_for(channel.get(), 30)
    assert first.outputs is not None and int(first.outputs["y"].reshape(-1)[0]) == 1
    with pytest.raises(Unavailable, match="refused"):
        await execution
    reading = asyncio.ensure_future(channel.get())
    await asyncio.sleep(0)  # it waits for the next response, as the engine's reader does
    channel.execution_done(execution)
    last = await asyncio.wait_for(reading, 30)
    assert isinstance(last.error, Unavailable) and last.final
    await scheduler.stop()


@synchronous
@pytest.mark.parametrize("kind", [Counter, Tally])
async def test_a_request_cancelled_between_steps_runs_no_further_step(
    kind: type[Counter],
) -> None:
    scheduler, backend = iterative(backend=kind())
    first = asyncio.create_task(scheduler.submit(steps(10**9)))
    second = asyncio.create_task(scheduler.submit(steps(10**9)))
    await until(lambda: len(backend.steps) >= 3)
    first.cancel()
    await until(lambda: len(backend.steps[-1]) == 1)  # a step without it
    second.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    key = backend.steps[0][0]
    with_it = [key in step for step in backend.steps]
    assert with_it.index(False) == with_it.count(True)  # it ran in a prefix of the steps
    await scheduler.stop()


@synchronous
@pytest.mark.parametrize(
    ("error", "failed"),
    [(InvalidArgument("refused"), InvalidArgument), (RuntimeError("broken"), ModelExecutionError)],
)
async def test_a_failing_step_fails_only_its_requests(
    error: Exception, failed: type[Exception]
) -> None:
    """A step that raises fails the requests it ran (only the one at fault where the model
    refused its input: the others run again one by one, and go on); later steps run."""
    scheduler, _ = iterative(backend=Failing(error))
    at_fault = asyncio.ensure_future(scheduler.submit(steps(13)))
    other = asyncio.ensure_future(scheduler.submit(steps(5)))
    with pytest.raises(failed):
        await asyncio.wait_for(at_fault, 10)
    if failed is InvalidArgument:
        assert int((await asyncio.wait_for(other, 10))["y"].reshape(-1)[0]) == 5
    else:
        with pytest.raises(failed):
            await asyncio.wait_for(other, 10)
    later = await asyncio.wait_for(scheduler.submit(steps(4)), 10)
    assert int(later["y"].reshape(-1)[0]) == 4
    await scheduler.stop()


class Recorder(Counter):
    """A Counter that records each step's rows as (correlation id, x)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[int, int]]] = []

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        keys, xs = inputs["CORRID"].reshape(-1), inputs["x"].reshape(-1)
        self.rows.append([(int(key), int(x)) for key, x in zip(keys, xs, strict=True)])
        return super().execute(inputs, output_names, requests)


@synchronous
async def test_each_step_stacks_its_own_requests_inputs_as_the_running_batch_changes() -> None:
    # Two slots: when the 2-step request ends, the backlog's 4-step request takes its row, so
    # the next step has as many rows as the one before but not the same requests.
    recorder = Recorder()
    scheduler, _ = iterative(max_batch_size=2, backend=recorder)
    answers = await asyncio.gather(*(scheduler.submit(steps(n)) for n in (2, 6, 4)))
    assert [int(a["y"][0, 0]) for a in answers] == [2, 6, 4]
    x_of: dict[int, set[int]] = {}
    for rows in recorder.rows:
        for key, x in rows:
            x_of.setdefault(key, set()).add(x)
    assert sorted(x_of.values(), key=min) == [{2}, {4}, {6}]  # one x per request, its own
    assert [len(rows) for rows in recorder.rows] == [2] * 6  # c ran where a had
    await scheduler.stop()


class SlowCounter(Counter):
    """A Counter whose every step takes `STEP_S` at least."""

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        time.sleep(STEP_S)
        return super().execute(inputs, output_names, requests)


STEP_S = 0.005


@synchronous
async def test_a_request_runs_longer_than_its_idle_limit_by_steps_within_it() -> None:
    # Its idle clock restarts at each step it is handed back in, so 60 steps of 5 ms each
    # (300 ms at least) never idle out under a limit of 200 ms between steps.
    controls = f"iterative_sequence: true, control_input [ {CORRID.lstrip(',')} ] {STATE}"
    settings = sequence_settings(
        max_batch_size=4, extra=controls + " max_sequence_idle_microseconds: 200000"
    )
    backend = SlowCounter()
    scheduler = IterativeBatcher(
        [ModelInstance("m_0", Device(DeviceKind.CPU), backend)], settings, ["y"]
    )
    scheduler.start()
    outputs = await asyncio.wait_for(scheduler.submit(steps(60)), 10)
    assert int(outputs["y"].reshape(-1)[0]) == 60
    await scheduler.stop()


class MarkingOnly(Counter):
    """A Counter that marks only the requests it hands back (`rescheduled` left as it was for
    the others, as a backend whose answer names those alone), and records each step's
    requests as the backend sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Sequence[BatchRequest]] = []

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        self.requests.append(requests)
        return super().execute(inputs, output_names, requests)

    def mark(self, request: BatchRequest, again: bool) -> None:
        if again:
            request.rescheduled = True


@synchronous
async def test_a_step_of_the_same_requests_runs_their_batch_again_unmarked() -> None:
    """While the running batch keeps its requests, each step runs the step before's batch
    (the backend sees the same request records), with the marks of the step before cleared:
    a request the model no longer hands back ends."""
    backend = MarkingOnly()
    scheduler, _ = iterative(backend=backend)
    answers = await asyncio.wait_for(
        asyncio.gather(*(scheduler.submit(steps(n)) for n in (3, 6))), 10
    )
    assert [int(a["y"][0, 0]) for a in answers] == [3, 6]
    assert [len(rows) for rows in backend.steps] == [2, 2, 2, 1, 1, 1]
    seen, rows = backend.requests, backend.steps
    for step in range(1, len(seen)):
        kept = [any(a is b for b in seen[step - 1]) for a in seen[step]]
        # The same requests: the same records; the 6-step request alone: new ones
        assert kept == [rows[step] == rows[step - 1]] * len(rows[step])
    await scheduler.stop()


@synchronous
async def test_a_request_whose_reader_is_behind_runs_no_step_while_the_others_go_on() -> None:
    """Its steps wait once `MAX_UNREAD` of its responses wait for its reader, also where the
    next step is taken without a look at every slot (no implicit state), and go on once the
    reader caught up, while the others still run."""
    backend = Tally(talks=True)
    scheduler, _ = iterative(backend=backend)
    slow, endless = steps(MAX_UNREAD + 20), steps(10**9)
    slow.responses, endless.responses = ResponseChannel(), ResponseChannel()
    slow_run = asyncio.ensure_future(scheduler.submit(slow))
    endless_run = asyncio.ensure_future(scheduler.submit(endless))
    reading = asyncio.ensure_future(_read_on(endless.responses))
    await until(lambda: len(backend.steps) > MAX_UNREAD + 10)
    key = slow.parameters["sequence_id"]
    assert sum(key in keys for keys in backend.steps) == MAX_UNREAD  # its reader is behind
    slow_read = await asyncio.wait_for(read_to_the_end(slow.responses, threading.Event()), 10)
    assert slow_read == list(range(1, MAX_UNREAD + 21))
    await asyncio.wait_for(slow_run, 10)
    assert not endless_run.done()
    reading.cancel()
    endless_run.cancel()
    await asyncio.gather(endless_run, reading, return_exceptions=True)
    await scheduler.stop()


@synchronous
async def test_requests_whose_inputs_do_not_batch_together_take_turns() -> None:
    """Each step runs the request that waited longest and those whose inputs' shapes match
    its, so two that cannot share a batch take turns, also without implicit state."""
    config = parse_pbtxt(
        f"""
        name: "m"
        max_batch_size: 4
        input [ {{ name: "x", data_type: TYPE_INT32, dims: [ -1 ] }} ]
        output [ {{ name: "y", data_type: TYPE_INT32, dims: [ 1 ] }} ]
        sequence_batching {{ iterative_sequence: true, control_input [ {CORRID.lstrip(",")} ] }}
        """
    )
    backend = Tally()
    scheduler = IterativeBatcher(
        [ModelInstance("m_0", Device(DeviceKind.CPU), backend)],
        SequenceSettings.from_config(config, Path(".")),
        ["y"],
    )
    scheduler.start()
    endless = asyncio.ensure_future(scheduler.submit(steps(10**9)))
    await until(lambda: len(backend.steps) > 3)
    wide = InferRequest("m", {"x": np.array([[4, 0]], dtype=np.int32)})
    outputs = await asyncio.wait_for(scheduler.submit(wide), 10)
    assert int(outputs["y"][0, 0]) == 4
    key = wide.parameters["sequence_id"]
    ran = [keys == [key] for keys in backend.steps]
    assert ran.count(True) == 4
    assert not any(a and b for a, b in itertools.pairwise(ran))  # never twice in a row
    endless.cancel()
    await asyncio.gather(endless, return_exceptions=True)
    await scheduler.stop()


async def _read_on(channel: ResponseChannel) -> None:
    """Take each response as it comes, until cancelled."""
    while True:
        await channel.get()
