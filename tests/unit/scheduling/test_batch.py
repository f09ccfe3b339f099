"""The batch core: executing a formed batch, splitting its answer, falling back one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import numpy as np

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.core.errors import InferdError, Internal, InvalidArgument, ModelExecutionError
from inferd.core.types import Array, RequestedOutput, Timestamps
from inferd.scheduling.batch import (
    Batch,
    BatchRunner,
    Pending,
    Wakeup,
    batch_failure,
    select_outputs,
    split_rows,
    stack_inputs,
    wanted_outputs,
)
from tests.unit.scheduling.fakes import Doubler, instances, request

Row = Pending | None


class Rows:
    """A `BatchKind` as plain as it gets: inputs stacked (padding rows are zeros), outputs
    split by rows; `finish` fails a request whose output is negative."""

    def __init__(self) -> None:
        self.one_by_one_calls = 0

    def inputs(self, batch: Batch[Pending]) -> Mapping[str, Array]:
        return stack_inputs([row.request.inputs if row else None for row in batch.rows])

    def output_names(self, batch: Batch[Pending]) -> list[str]:
        return wanted_outputs(batch.calls, ["y"])

    def split(self, batch: Batch[Pending], outputs: dict[str, Array]) -> list[dict[str, Array]]:
        return split_rows(batch, outputs)

    def one_by_one(self, batch: Batch[Pending]) -> list[list[Row]]:
        self.one_by_one_calls += 1
        return [[call] for call in batch.calls]

    def finish(self, call: Pending, outputs: dict[str, Array]) -> dict[str, Array]:
        if (outputs["y"] < 0).any():
            raise Internal("negative output")
        return select_outputs(call.request, outputs)


Answer = Callable[[Array, Sequence[BatchRequest]], BatchOutputs]


class Scripted:
    """A backend whose answer to the input `x` and the batch's requests is `answer`."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> BatchOutputs:
        return self.answer(inputs["x"], requests)

    def close(self) -> None:
        pass


def each_request(count: int | None = None) -> Scripted:
    """Answers each request on its own: x, or an error where x starts with 0; only the first
    `count` answers when given."""

    def answer(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
        answers: list[dict[str, Array] | InferdError] = [
            InvalidArgument("zero") if x[part.start, 0] == 0 else {"y": x[part.start : part.end]}
            for part in requests
        ]
        return answers[:count]

    return Scripted(answer)


def one_row_too_many(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    return {"y": np.concatenate([x, x[:1]])}


def crash(x: Array, requests: Sequence[BatchRequest]) -> BatchOutputs:
    raise ModelExecutionError("crashed")


def pending(value: float, rows: int = 1, outputs: tuple[str, ...] | None = None) -> Pending:
    future: asyncio.Future[dict[str, Array]] = asyncio.get_running_loop().create_future()
    call = Pending(request(value, rows), future, 0, rows)
    if outputs is not None:
        call.request.outputs = [RequestedOutput(name) for name in outputs]
    return call


async def run_batch(
    backend: Any, rows: list[Row], kind: Rows | None = None
) -> tuple[list[dict[str, Array] | BaseException], list[int]]:
    """Run `rows` on `backend`, deliver, and return each real row's outcome and the rows
    each reported execution had."""
    reported: list[int] = []

    def on_batch(
        filled: int, compute: Timestamps, instance: str, calls: object, padding: int
    ) -> None:
        assert compute.compute_start <= compute.compute_input_end <= compute.compute_end
        reported.append(filled)

    [instance] = instances(backend)
    try:
        runner = BatchRunner(kind or Rows(), on_batch)
        deliver = await runner.run(instance, rows)
        calls = [row for row in rows if row is not None]
        assert not any(call.future.done() for call in calls)  # nothing answered before delivery
        deliver()
        outcomes = await asyncio.gather(*(call.future for call in calls), return_exceptions=True)
    finally:
        instance.close()
    return list(outcomes), reported


def synchronous(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    def run() -> None:
        asyncio.run(test())

    run.__name__ = test.__name__
    return run


@synchronous
async def test_each_request_gets_its_own_rows_and_the_batch_is_reported_once() -> None:
    backend = Doubler()
    rows: list[Row] = [pending(1, rows=2), pending(2), pending(3, rows=3)]
    outcomes, reported = await run_batch(backend, rows)
    assert backend.batches == [[1, 1, 2, 3, 3, 3]]
    assert reported == [6]
    for outcome, value, count in zip(outcomes, (1, 2, 3), (2, 1, 3), strict=True):
        assert not isinstance(outcome, BaseException)
        np.testing.assert_array_equal(outcome["y"], np.full((count, 4), 2.0 * value))
    assert all(row.request.timestamps.compute_end > 0 for row in rows if row is not None)


@synchronous
async def test_a_refused_input_fails_only_its_request_after_one_by_one_runs() -> None:
    backend, kind = Doubler(refuse=frozenset({-1.0})), Rows()
    outcomes, reported = await run_batch(backend, [pending(1), pending(-1), pending(2)], kind)
    assert kind.one_by_one_calls == 1
    assert backend.batches == [[1], [2]]  # the whole batch and the refused one never ran
    assert reported == [1, 1]
    first, refused, third = outcomes
    assert isinstance(refused, InvalidArgument)
    assert not isinstance(first, BaseException) and not isinstance(third, BaseException)
    assert first["y"][0, 0] == 2 and third["y"][0, 0] == 4


@synchronous
async def test_a_refused_lone_request_fails_without_a_retry() -> None:
    kind = Rows()
    outcomes, reported = await run_batch(Doubler(refuse=frozenset({-1.0})), [pending(-1)], kind)
    assert isinstance(outcomes[0], InvalidArgument)
    assert (kind.one_by_one_calls, reported) == (0, [])


@synchronous
async def test_per_request_errors_from_the_backend_fail_only_those_requests() -> None:
    outcomes, reported = await run_batch(each_request(), [pending(1), pending(0), pending(2)])
    first, failed, third = outcomes
    assert isinstance(failed, InvalidArgument) and failed.message == "zero"
    assert not isinstance(first, BaseException) and not isinstance(third, BaseException)
    assert (first["y"][0, 0], third["y"][0, 0]) == (1, 2)
    assert reported == [3]  # one execution, not a fallback


@synchronous
async def test_a_wrong_number_of_answers_fails_the_whole_batch() -> None:
    outcomes, _ = await run_batch(each_request(count=1), [pending(1), pending(2)])
    assert all(isinstance(o, Internal) and "answered 1 of 2" in str(o) for o in outcomes)


@synchronous
async def test_a_wrong_batch_axis_fails_the_whole_batch() -> None:
    outcomes, _ = await run_batch(Scripted(one_row_too_many), [pending(1), pending(2)])
    assert all(isinstance(o, Internal) and "for a batch of 2 rows" in str(o) for o in outcomes)


@synchronous
async def test_a_crashing_model_fails_every_request_with_its_error() -> None:
    outcomes, reported = await run_batch(Scripted(crash), [pending(1), pending(2)])
    assert all(isinstance(o, ModelExecutionError) for o in outcomes) and reported == []


@synchronous
async def test_a_fault_of_the_server_fails_every_request_as_internal() -> None:
    # The request names an output the batch did not compute: selecting it is our bug.
    outcomes, reported = await run_batch(Doubler(), [pending(1), pending(2, outputs=("z",))])
    assert all(isinstance(o, Internal) and "batch failed" in str(o) for o in outcomes)
    assert reported == []


@synchronous
async def test_finish_refusing_one_answer_fails_only_that_request() -> None:
    outcomes, _ = await run_batch(each_request(), [pending(1), pending(-3)])
    assert not isinstance(outcomes[0], BaseException)
    assert isinstance(outcomes[1], Internal) and "negative output" in str(outcomes[1])


@synchronous
async def test_padding_rows_are_zeros_sent_to_the_model_and_answer_no_one() -> None:
    backend = Doubler()
    rows: list[Row] = [None, pending(5), None, pending(6)]
    outcomes, reported = await run_batch(backend, rows)
    assert backend.batches == [[0, 5, 0, 6]]
    assert reported == [2]
    assert [o["y"][0, 0] for o in outcomes if not isinstance(o, BaseException)] == [10, 12]


def test_batch_row_ranges_skip_padding_rows() -> None:
    async def scenario() -> None:
        a, b = pending(1, rows=2), pending(2)
        batch = Batch([None, a, None, b])
        assert [(r.start, r.end) for r in batch.requests] == [(1, 3), (4, 5)]
        assert (batch.calls, batch.size, batch.filled) == ([a, b], 5, 3)

    asyncio.run(scenario())


def test_stacking_pads_bytes_inputs_with_empty_elements() -> None:
    real = {"s": np.array([b"ab", b"c"], dtype=np.object_)}
    stacked = stack_inputs([real, None])
    assert stacked["s"].tolist() == [b"ab", b"c", b"", b""]
    assert stack_inputs([real]) is real  # a lone request's inputs go as they are


def test_wanted_outputs_keep_the_model_order_and_all_when_one_request_names_none() -> None:
    async def scenario() -> None:
        names = ["a", "b", "c"]
        named = pending(1, outputs=("c", "a"))
        assert wanted_outputs([named], names) == ["a", "c"]
        assert wanted_outputs([named, pending(2)], names) == names

    asyncio.run(scenario())


def test_only_non_inferd_errors_become_internal() -> None:
    refused = InvalidArgument("bad")
    assert batch_failure(refused) is refused
    failure = batch_failure(ValueError("oops"))
    assert isinstance(failure, Internal) and "batch failed: oops" in str(failure)


@synchronous
async def test_wakeup_ends_a_sleep_early_or_at_its_deadline() -> None:
    wakeup = Wakeup()
    assert not wakeup.sleeping
    sleeper = asyncio.ensure_future(wakeup.sleep(None))
    await asyncio.sleep(0)
    assert wakeup.sleeping
    wakeup.wake()
    await asyncio.wait_for(sleeper, 5)
    assert not wakeup.sleeping
    await asyncio.wait_for(wakeup.sleep(0), 5)  # a deadline already past: no wait for `wake`
