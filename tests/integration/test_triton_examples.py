"""What Triton's example clients and perf_analyzer check, against inferd.

The sequence examples (`simple_{http,grpc}_sequence_sync_infer_client.py`,
`simple_grpc_sequence_stream_infer_client.py`, with and without `-d`) send three sequences to
Triton's QA models `simple_sequence`, `simple_dyna_sequence` and `simple_string_dyna_sequence`
(served from `examples/triton_qa_repository`) and compare every answer with fixed values; these
tests make the same calls and expect the same values. perf_analyzer reads an ensemble's
`inference_count`, which counts its requests' rows as in Triton.
"""

from __future__ import annotations

import queue
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.conftest import generate_models
from tests.integration.infer_helpers import infer
from tests.integration.server import RunningServer, running_server

QA_REPOSITORY = Path(__file__).parents[2] / "examples" / "triton_qa_repository"
VALUES = [11, 7, 5, 3, 2, 0, 1]
NEGATED = [-v for v in VALUES]
INT_IDS = (1000, 1001)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("triton_qa")
    shutil.copytree(QA_REPOSITORY, repository, dirs_exist_ok=True)
    generate_models.write_onnx_pipeline(repository)
    with running_server(repository) as running:
        yield running


def sequences(dyna: bool) -> list[tuple[str, int | str, list[int], list[int]]]:
    """(model, sequence id, inputs, expected outputs) of the three sequences an example sends.

    `simple_sequence` answers READY * (INPUT + START); `simple_dyna_sequence` adds END * CORRID;
    `simple_string_dyna_sequence` accumulates and adds the id at the end. Without `-d` the
    string-id sequence goes to `simple_sequence` with a UUID id.
    """
    id0, id1 = INT_IDS
    if not dyna:
        return [
            ("simple_sequence", id0, [0, *VALUES], [1, *VALUES]),
            ("simple_sequence", id1, [100, *NEGATED], [101, *NEGATED]),
            ("simple_sequence", str(uuid.uuid4()), [20, *NEGATED], [21, *NEGATED]),
        ]
    return [
        ("simple_dyna_sequence", id0, [0, *VALUES], [1, *VALUES[:-1], 1 + id0]),
        ("simple_dyna_sequence", id1, [100, *NEGATED], [101, *NEGATED[:-1], -1 + id1]),
        ("simple_string_dyna_sequence", "1002", [20, *NEGATED], [20, 9, 2, -3, -6, -8, -8, 993]),
    ]


def value_input(module: ModuleType, value: int) -> Any:
    infer_input = module.InferInput("INPUT", [1, 1], "INT32")
    infer_input.set_data_from_numpy(np.full([1, 1], value, dtype=np.int32))
    return infer_input


@pytest.mark.parametrize("dyna", [False, True], ids=["simple", "dyna"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sequence_sync_infer_client(server: RunningServer, protocol: str, dyna: bool) -> None:
    """simple_{http,grpc}_sequence_sync_infer_client.py: one sequence after the other."""
    module: ModuleType = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    client = module.InferenceServerClient(url)
    try:
        for model, sequence_id, inputs, expected in sequences(dyna):
            answers = [
                client.infer(
                    model,
                    [value_input(module, value)],
                    outputs=[module.InferRequestedOutput("OUTPUT")],
                    sequence_id=sequence_id,
                    sequence_start=step == 0,
                    sequence_end=step == len(inputs) - 1,
                ).as_numpy("OUTPUT")[0, 0]
                for step, value in enumerate(inputs)
            ]
            assert answers == expected, (model, sequence_id)
    finally:
        client.close()


@pytest.mark.parametrize("dyna", [False, True], ids=["simple", "dyna"])
def test_grpc_sequence_stream_infer_client(server: RunningServer, dyna: bool) -> None:
    """simple_grpc_sequence_stream_infer_client.py: all three sequences sent at once on one
    stream; answers are told apart by their request id `<sequence id>_<step>`."""
    answers: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put(error or result))
    cases = sequences(dyna)
    try:
        for model, sequence_id, inputs, _ in cases:
            for step, value in enumerate(inputs):
                client.async_stream_infer(
                    model,
                    [value_input(grpcclient, value)],
                    outputs=[grpcclient.InferRequestedOutput("OUTPUT")],
                    request_id=f"{sequence_id}_{step + 1}",
                    sequence_id=sequence_id,
                    sequence_start=step == 0,
                    sequence_end=step == len(inputs) - 1,
                )
        received: dict[str, dict[int, int]] = {str(case[1]): {} for case in cases}
        for _ in range(sum(len(case[2]) for case in cases)):
            result = answers.get(timeout=30)
            assert isinstance(result, grpcclient.InferResult), result
            sequence_id, step = result.get_response().id.rsplit("_", 1)
            received[sequence_id][int(step)] = int(result.as_numpy("OUTPUT")[0, 0])
    finally:
        client.stop_stream()
        client.close()
    for _, sequence_id, _, expected in cases:
        steps = received[str(sequence_id)]
        assert [steps[step] for step in sorted(steps)] == expected, sequence_id


def test_ensemble_counts_its_requests_rows_as_triton_does(server: RunningServer) -> None:
    """perf_analyzer prints the ensemble's own `inference_count` next to its composing
    models'; Triton counts the rows of the ensemble's requests, with no executions."""
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        rows = np.random.default_rng(0).random(
            (3, generate_models.PIPELINE_WIDTH), dtype=np.float32
        )
        for _ in range(2):
            infer(client, httpclient, "onnx_pipeline", {"IN": rows})
        (stats,) = client.get_inference_statistics("onnx_pipeline")["model_stats"]
    finally:
        client.close()
    assert int(stats["inference_count"]) == 6
    assert int(stats["execution_count"]) == 0
    assert int(stats["inference_stats"]["success"]["count"]) == 2
