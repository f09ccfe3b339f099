"""The ensemble of Triton's qa/L0_simple_ensemble on the real server with tritonclient: six
steps through two versions of the `simple` add/sub model, steps that read one tensor into
both of their inputs, and the sequence flags that each streamed response carries back."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.conftest import generate_models
from tests.integration.server import RunningServer, running_server

ENSEMBLE = "ensemble_add_sub_int32_int32_int32"


def _step(version: int, inputs: tuple[str, str], output: tuple[str, str]) -> str:
    return (
        f'{{ model_name: "simple" model_version: {version} '
        f'input_map {{ key: "INPUT0" value: "{inputs[0]}" }} '
        f'input_map {{ key: "INPUT1" value: "{inputs[1]}" }} '
        f'output_map {{ key: "{output[0]}" value: "{output[1]}" }} }}'
    )


# OUTPUT0 = ((2 a) - a) + b = a + b and OUTPUT1 = a - ((2 b) - b) = a - b, where the first
# two steps add a tensor to itself (one tensor mapped to both inputs of a step).
STEPS = [
    _step(-1, ("INPUT0", "INPUT0"), ("OUTPUT0", "double_input0")),
    _step(1, ("INPUT1", "INPUT1"), ("OUTPUT0", "double_input1")),
    _step(-1, ("double_input0", "INPUT0"), ("OUTPUT1", "input0_val")),
    _step(1, ("double_input1", "INPUT1"), ("OUTPUT1", "input1_val")),
    _step(-1, ("input0_val", "INPUT1"), ("OUTPUT0", "OUTPUT0")),
    _step(1, ("INPUT0", "input1_val"), ("OUTPUT1", "OUTPUT1")),
]
ENSEMBLE_CONFIG = (
    generate_models.SIMPLE_CONFIG.replace('"simple"', f'"{ENSEMBLE}"')
    .replace('platform: "onnxruntime_onnx"', 'platform: "ensemble"')
    .replace("instance_group [ { count: 1, kind: KIND_CPU } ]\n", "")
    + f"ensemble_scheduling {{ step [ {', '.join(STEPS)} ] }}\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("add_sub")
    for version in (1, 2):
        generate_models.simple_model(repository / "simple" / str(version) / "model.onnx")
    simple = generate_models.SIMPLE_CONFIG.replace(
        "max_batch_size: 8", "max_batch_size: 8\nversion_policy: { all {} }"
    )
    (repository / "simple" / "config.pbtxt").write_text(simple)
    (repository / ENSEMBLE / "1").mkdir(parents=True)
    (repository / ENSEMBLE / "config.pbtxt").write_text(ENSEMBLE_CONFIG)
    with running_server(repository) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_url) as opened:
        yield opened


def _inputs(rows: int) -> tuple[np.ndarray, np.ndarray, list[grpcclient.InferInput]]:
    rng = np.random.default_rng(rows)
    a = rng.integers(0, 100, size=(rows, 16), dtype=np.int32)
    b = rng.integers(0, 100, size=(rows, 16), dtype=np.int32)
    inputs = [
        grpcclient.InferInput("INPUT0", [rows, 16], "INT32"),
        grpcclient.InferInput("INPUT1", [rows, 16], "INT32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return a, b, inputs


def _successes(client: grpcclient.InferenceServerClient) -> dict[str, int]:
    stats = client.get_inference_statistics("simple").model_stats
    return {s.version: s.inference_stats.success.count for s in stats}


@pytest.mark.parametrize("rows", [1, 8])
def test_every_step_runs_and_both_outputs_are_right(
    client: grpcclient.InferenceServerClient, rows: int
) -> None:
    before = _successes(client)
    a, b, inputs = _inputs(rows)
    result = client.infer(ENSEMBLE, inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    after = _successes(client)
    # Three steps name version 1 and three the latest (2).
    assert {v: after[v] - before.get(v, 0) for v in after} == {"1": 3, "2": 3}


def test_one_requested_output_runs_only_the_steps_it_needs(
    client: grpcclient.InferenceServerClient,
) -> None:
    before = _successes(client)
    a, b, inputs = _inputs(3)
    wanted = [grpcclient.InferRequestedOutput("OUTPUT0")]
    result = client.infer(ENSEMBLE, inputs, outputs=wanted)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    assert result.as_numpy("OUTPUT1") is None
    after = _successes(client)
    assert {v: after[v] - before.get(v, 0) for v in after} == {"1": 0, "2": 3}


def test_each_streamed_response_carries_the_request_sequence_flags(
    client: grpcclient.InferenceServerClient,
) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    flags = [(True, False), (False, False), (False, True)]
    try:
        for count, (start, end) in enumerate(flags):
            _, _, inputs = _inputs(1)
            client.async_stream_infer(
                ENSEMBLE,
                inputs,
                request_id=f"r{count}",
                sequence_id=4242,
                sequence_start=start,
                sequence_end=end,
                outputs=[grpcclient.InferRequestedOutput("OUTPUT0")],
            )
        received = {}
        for _ in flags:
            result, error = answers.get(timeout=30)
            assert error is None
            response = result.get_response()
            parameters = response.parameters
            received[response.id] = (
                parameters["sequence_start"].bool_param,
                parameters["sequence_end"].bool_param,
                parameters["sequence_id"].int64_param,
            )
    finally:
        client.stop_stream()
    assert received == {f"r{count}": (*pair, 4242) for count, pair in enumerate(flags)}
