"""The sequence batcher through the real server and tritonclient: many sequences interleaved
over HTTP and gRPC streams, each getting exactly its own running sums; and the error cases."""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import generate_models
from tests.integration.http_helpers import post_json
from tests.integration.server import RunningServer, running_server

EXAMPLES = Path(generate_models.__file__).parent / "model_repository"
STATE = "sequence_accumulate_state"
OLDEST = "sequence_accumulate_oldest"
SMALL = "sequence_small"  # one instance, two slots, a backlog of one
OLDEST_SETTINGS = "max_candidate_sequences: 4, max_queue_delay_microseconds: 500"
IDLE = "sequence_idle"  # sequences idle out after 200 ms
PYTHON = "sequence_accumulate"
PYTHON_STRING = "sequence_accumulate_string"
PYTHON_STATE = "sequence_python_state"  # a Python model with implicit state, in process
PYTHON_STATE_ISOLATED = "sequence_python_state_isolated"
PYTHON_STATE_CRASHING = "sequence_python_state_crashing"  # isolated; INPUT 999 kills its worker
# Implicit state in a custom Python model: OUTPUT = OUTPUT_STATE = INPUT_STATE + INPUT. A
# negative INPUT is refused, and each of the two slots waits up to 2 s for the other, so two
# sequences' steps that arrive together run as one batch.
PYTHON_STATE_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 2
input [ {{ name: "INPUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
sequence_batching {{
  direct {{ minimum_slot_utilization: 1.0, max_queue_delay_microseconds: 2000000 }}
  state [ {{
    input_name: "INPUT_STATE", output_name: "OUTPUT_STATE", data_type: TYPE_INT32, dims: [ 1 ]
  }} ]
}}
parameters {{ key: "isolation" value: {{ string_value: "{isolation}" }} }}
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
"""
PYTHON_STATE_MODEL = """
import os

import numpy as np

from inferd.backends.python import InferenceError


class InferdModel:
    def execute(self, batch):
        values = batch.inputs["INPUT"]
        if (values < 0).any():
            raise InferenceError("INPUT must not be negative")
        if (values == 999).any():
            os._exit(1)  # only the crashing variant, isolated in a worker, is sent 999
        total = batch.inputs["INPUT_STATE"] + values
        return {"OUTPUT": total, "OUTPUT_STATE": total}
"""


def _variant(repository: Path, name: str, source: str, **replacements: str) -> None:
    config = (EXAMPLES / source / "config.pbtxt").read_text()
    config = config.replace(f'name: "{source}"', f'name: "{name}"')
    for old, new in replacements.items():
        assert old in config or old.startswith("#"), old
        config = config.replace(old, new)
    (repository / name).mkdir()
    (repository / name / "config.pbtxt").write_text(config)


@pytest.fixture(scope="module")
def sequence_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("sequences")
    model = repository / "_model.onnx"
    generate_models.accumulate_state_model(model)
    _variant(repository, STATE, STATE)
    _variant(
        repository,
        OLDEST,
        STATE,
        **{"  state [": f"  oldest {{ {OLDEST_SETTINGS} }}\n  state ["},
    )
    _variant(
        repository,
        SMALL,
        STATE,
        **{
            "max_batch_size: 8": "max_batch_size: 2",
            "count: 2": "count: 1",
            "instance_group": 'parameters { key: "inferd.max_sequence_backlog" '
            'value: { string_value: "1" } }\ninstance_group',
        },
    )
    _variant(repository, IDLE, STATE, **{"5000000": "200000"})
    for name in (STATE, OLDEST, SMALL, IDLE):
        (repository / name / "1").mkdir()
        shutil.copy(model, repository / name / "1" / "model.onnx")
    model.unlink()
    shutil.copytree(EXAMPLES / PYTHON, repository / PYTHON)
    _variant(repository, PYTHON_STRING, PYTHON, TYPE_UINT64="TYPE_STRING")
    shutil.copytree(EXAMPLES / PYTHON / "1", repository / PYTHON_STRING / "1")
    for name, isolation in ((PYTHON_STATE, "none"), (PYTHON_STATE_ISOLATED, "process")):
        (repository / name / "1").mkdir(parents=True)
        config = PYTHON_STATE_CONFIG.format(name=name, isolation=isolation)
        (repository / name / "config.pbtxt").write_text(config)
        (repository / name / "1" / "model.py").write_text(PYTHON_STATE_MODEL)
    (repository / PYTHON_STATE_CRASHING / "1").mkdir(parents=True)
    config = PYTHON_STATE_CONFIG.format(name=PYTHON_STATE_CRASHING, isolation="process")
    config = config.replace(
        "minimum_slot_utilization: 1.0, max_queue_delay_microseconds: 2000000", ""
    )
    (repository / PYTHON_STATE_CRASHING / "config.pbtxt").write_text(config)
    (repository / PYTHON_STATE_CRASHING / "1" / "model.py").write_text(PYTHON_STATE_MODEL)
    with running_server(repository) as server:
        yield server


def _http_step(
    client: httpclient.InferenceServerClient,
    model: str,
    value: int,
    sequence_id: int | str,
    start: bool = False,
    end: bool = False,
) -> int:
    data = np.array([[value]], dtype=np.int32)
    infer_input = httpclient.InferInput("INPUT", [1, 1], "INT32")
    infer_input.set_data_from_numpy(data)
    result = client.infer(
        model, [infer_input], sequence_id=sequence_id, sequence_start=start, sequence_end=end
    )
    output = result.as_numpy("OUTPUT")
    assert output.shape == (1, 1)
    return int(output[0, 0])


def _values(sequence: int, steps: int) -> list[int]:
    return [sequence * 100 + step for step in range(steps)]


def _run_http_sequence(
    url: str, model: str, sequence_id: int | str, number: int, steps: int
) -> None:
    values = _values(number, steps)
    client = httpclient.InferenceServerClient(url)
    try:
        sums = [
            _http_step(client, model, value, sequence_id, start=i == 0, end=i == steps - 1)
            for i, value in enumerate(values)
        ]
    finally:
        client.close()
    assert sums == list(np.cumsum(values)), (sequence_id, sums)


@pytest.mark.parametrize("model", [STATE, OLDEST, PYTHON])
def test_many_http_sequences_at_once_each_get_their_own_sums(
    sequence_server: RunningServer, model: str
) -> None:
    # 24 sequences over 2 instances x 8 slots (or 4 candidates): some wait in the backlog.
    _run_http_sequences(sequence_server.http_url, model, 1000, 24, 12)


def _run_http_sequences(url: str, model: str, first_id: int, count: int, clients: int) -> None:
    """`count` sequences of 8 steps from `clients` clients at once, each checking its sums."""
    with ThreadPoolExecutor(clients) as pool:
        futures = [
            pool.submit(_run_http_sequence, url, model, first_id + n, n, 8) for n in range(count)
        ]
        for future in futures:
            future.result(timeout=60)


def test_string_ids_reach_the_model_as_corrid(sequence_server: RunningServer) -> None:
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(_run_http_sequence, sequence_server.http_url, PYTHON_STRING, f"s-{n}", n, 5)
            for n in range(6)
        ]
        for future in futures:
            future.result(timeout=60)
    client = httpclient.InferenceServerClient(sequence_server.http_url)
    with pytest.raises(InferenceServerException, match="takes string sequence ids"):
        _http_step(client, PYTHON_STRING, 1, 7, start=True)


def _stream_sequences(url: str, model: str, numbers: list[int], steps: int) -> None:
    """Send every sequence's steps interleaved on one stream; check each one's sums."""
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for step in range(steps):
            for number in numbers:
                infer_input = grpcclient.InferInput("INPUT", [1, 1], "INT32")
                value = _values(number, steps)[step]
                infer_input.set_data_from_numpy(np.array([[value]], dtype=np.int32))
                client.async_stream_infer(
                    model,
                    [infer_input],
                    request_id=f"{number}:{step}",
                    sequence_id=5000 + number,
                    sequence_start=step == 0,
                    sequence_end=step == steps - 1,
                )
        got: dict[int, list[int]] = {n: [] for n in numbers}
        for _ in range(steps * len(numbers)):
            result, error = answers.get(timeout=30)
            assert error is None, error
            number, step = map(int, result.get_response().id.split(":"))
            assert step == len(got[number])  # a sequence's answers come in order
            got[number].append(int(result.as_numpy("OUTPUT")[0, 0]))
    finally:
        client.stop_stream()
        client.close()
    for number in numbers:
        assert got[number] == list(np.cumsum(_values(number, steps)))


@pytest.mark.parametrize("model", [STATE, OLDEST])
def test_grpc_streams_interleave_many_sequences(sequence_server: RunningServer, model: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(
                _stream_sequences,
                sequence_server.grpc_url,
                model,
                list(range(c * 4, c * 4 + 4)),
                10,
            )
            for c in range(4)
        ]
        for future in futures:
            future.result(timeout=60)


def test_one_stream_with_more_sequences_than_slots_finishes_them_all(
    sequence_server: RunningServer,
) -> None:
    """20 sequences over 16 slots on one stream: the 4 that wait for slots must not stop the
    stream from reaching the steps that end the others (answers still leave in order)."""
    _stream_sequences(sequence_server.grpc_url, STATE, list(range(100, 120)), 5)


def test_restart_of_a_live_sequence_begins_from_the_initial_state(
    sequence_server: RunningServer,
) -> None:
    client = httpclient.InferenceServerClient(sequence_server.http_url)
    assert _http_step(client, STATE, 5, 77, start=True) == 5
    assert _http_step(client, STATE, 6, 77) == 11
    assert _http_step(client, STATE, 1, 77, start=True) == 1  # Triton: the old one ends early
    assert _http_step(client, STATE, 2, 77, end=True) == 3


def _http_error(server: RunningServer, model: str, parameters: dict[str, Any]) -> tuple[int, str]:
    document = {
        "inputs": [{"name": "INPUT", "datatype": "INT32", "shape": [1, 1], "data": [1]}],
        "parameters": parameters,
    }
    status, body = post_json(server.http_port, f"/v2/models/{model}/infer", document)
    return status, body.get("error", "")


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "must specify a non-zero or non-empty correlation ID"),
        ({"sequence_id": 0, "sequence_start": True}, "non-zero or non-empty correlation ID"),
        ({"sequence_id": 424242}, "must specify the START flag on the first request"),
        ({"sequence_id": 1, "sequence_start": "yes"}, "'sequence_start' must be a boolean"),
        ({"sequence_id": -3, "sequence_start": True}, "out of range"),
    ],
)
def test_bad_sequence_requests_get_400(
    sequence_server: RunningServer, parameters: dict[str, Any], message: str
) -> None:
    status, error = _http_error(sequence_server, STATE, parameters)
    assert status == 400
    assert message in error


def test_batch_of_two_and_server_fed_inputs_are_refused(sequence_server: RunningServer) -> None:
    document = {
        "inputs": [{"name": "INPUT", "datatype": "INT32", "shape": [2, 1], "data": [1, 2]}],
        "parameters": {"sequence_id": 9, "sequence_start": True},
    }
    status, body = post_json(sequence_server.http_port, f"/v2/models/{STATE}/infer", document)
    assert status == 400 and "batch-size 1" in body["error"]
    document["inputs"] = [
        {"name": n, "datatype": "INT32", "shape": [1, 1], "data": [1]}
        for n in ("INPUT", "INPUT_STATE")
    ]
    status, body = post_json(sequence_server.http_port, f"/v2/models/{STATE}/infer", document)
    assert status == 400 and "INPUT_STATE" in body["error"]


def test_grpc_errors_are_invalid_argument(sequence_server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(sequence_server.grpc_url)
    infer_input = grpcclient.InferInput("INPUT", [1, 1], "INT32")
    infer_input.set_data_from_numpy(np.array([[1]], dtype=np.int32))
    with pytest.raises(InferenceServerException) as missing:
        client.infer(STATE, [infer_input], sequence_id=31337)
    assert missing.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "START flag" in missing.value.message()
    with pytest.raises(InferenceServerException) as no_id:
        client.infer(STATE, [infer_input])
    assert no_id.value.status() == "StatusCode.INVALID_ARGUMENT"
    result = client.infer(STATE, [infer_input], sequence_id=31337, sequence_start=True)
    assert int(result.as_numpy("OUTPUT")[0, 0]) == 1  # the server kept serving


def test_idle_sequence_is_released(sequence_server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(sequence_server.http_url)
    assert _http_step(client, IDLE, 4, 11, start=True) == 4
    assert _http_step(client, IDLE, 4, 11) == 8
    time.sleep(0.6)
    with pytest.raises(InferenceServerException, match="START flag"):
        _http_step(client, IDLE, 4, 11)
    assert _http_step(client, IDLE, 4, 11, start=True, end=True) == 4


def test_backlog_waits_for_a_slot_and_a_full_backlog_is_503(
    sequence_server: RunningServer,
) -> None:
    client = httpclient.InferenceServerClient(sequence_server.http_url)
    # SMALL has two slots: sequences 21 and 22 take them, 23 waits in the backlog.
    assert _http_step(client, SMALL, 1, 21, start=True) == 1
    assert _http_step(client, SMALL, 2, 22, start=True) == 2
    results: list[int] = []

    def start_23() -> None:  # its own client: a tritonclient.http client is not thread-safe
        other = httpclient.InferenceServerClient(sequence_server.http_url)
        results.append(_http_step(other, SMALL, 3, 23, start=True))
        other.close()

    waiting = threading.Thread(target=start_23)
    waiting.start()
    time.sleep(0.1)
    assert not results
    status, error = _http_error(sequence_server, SMALL, {"sequence_id": 24, "sequence_start": True})
    assert status == 503 and "retry later" in error
    assert _http_step(client, SMALL, 10, 21, end=True) == 11  # frees a slot for 23
    waiting.join(timeout=10)
    assert results == [3]
    assert _http_step(client, SMALL, 1, 23, end=True) == 4
    assert _http_step(client, SMALL, 1, 22, end=True) == 3


@pytest.mark.parametrize("model", [PYTHON_STATE, PYTHON_STATE_ISOLATED])
def test_python_model_with_implicit_state(sequence_server: RunningServer, model: str) -> None:
    # Two sequences at once fill the model's two slots, so no step waits for the delay.
    _run_http_sequences(sequence_server.http_url, model, 600, 2, 2)


def _run_with_refused_step(url: str, model: str, sequence_id: int, refused: int) -> list[int]:
    """Steps 1..5 of a sequence with step `refused` sent as -1; returns the sums answered."""
    client = httpclient.InferenceServerClient(url)
    sums = []
    try:
        for step in range(1, 6):
            first, last = step == 1, step == 5
            if step == refused:
                with pytest.raises(InferenceServerException, match="must not be negative"):
                    _http_step(client, model, -1, sequence_id, first, last)
                continue
            sums.append(_http_step(client, model, step, sequence_id, first, last))
    finally:
        client.close()
    return sums


@pytest.mark.parametrize("model", [PYTHON_STATE, PYTHON_STATE_ISOLATED])
def test_a_refused_step_fails_only_its_own_sequence(
    sequence_server: RunningServer, model: str
) -> None:
    # The two sequences' steps run as one batch (each slot waits for the other); when the
    # model refuses sequence 702's third step, sequence 701's third step still runs, and 702's
    # state stays where it was.
    with ThreadPoolExecutor(2) as pool:
        good = pool.submit(_run_with_refused_step, sequence_server.http_url, model, 701, 0)
        bad = pool.submit(_run_with_refused_step, sequence_server.http_url, model, 702, 3)
        assert good.result(timeout=60) == [1, 3, 6, 10, 15]
        assert bad.result(timeout=60) == [1, 3, 7, 12]


def test_implicit_state_survives_a_crash_of_the_models_worker(
    sequence_server: RunningServer,
) -> None:
    # The state lives in the server, so the worker that replaces a crashed one carries on.
    client = httpclient.InferenceServerClient(sequence_server.http_url)
    try:
        assert _http_step(client, PYTHON_STATE_CRASHING, 1, 901, start=True) == 1
        assert _http_step(client, PYTHON_STATE_CRASHING, 2, 901) == 3
        with pytest.raises(InferenceServerException) as crashed:
            _http_step(client, PYTHON_STATE_CRASHING, 999, 901)
        assert crashed.value.status() == "503"
        assert _http_step(client, PYTHON_STATE_CRASHING, 3, 901, end=True) == 6
    finally:
        client.close()


def test_tensorflow_savedmodel_with_implicit_state(tmp_path: Path) -> None:
    # Auto-complete fills the config from the signature, leaving the state tensors to the
    # server: the client sees INPUT and OUTPUT only.
    pytest.importorskip("tensorflow")
    from tests import tensorflow_models

    name = "sequence_tensorflow_state"
    tensorflow_models.accumulate_state_model(tmp_path / name / "1")
    state = (EXAMPLES / STATE / "config.pbtxt").read_text().split("sequence_batching")[1]
    config = f'name: "{name}"\nmax_batch_size: 8\nsequence_batching{state}'
    (tmp_path / name / "config.pbtxt").write_text(config.replace("count: 2", "count: 1"))
    with running_server(tmp_path) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        completed = client.get_model_config(name)
        client.close()
        assert [t["name"] for t in completed["input"]] == ["INPUT"]
        assert [t["name"] for t in completed["output"]] == ["OUTPUT"]
        _run_http_sequences(server.http_url, name, 800, 6, 6)


BYTES_STATE_CONFIG = """
name: "previous_word"
max_batch_size: 4
sequence_batching {
  state [ {
    input_name: "INPUT_STATE", output_name: "OUTPUT_STATE", data_type: TYPE_STRING, dims: [ 1 ]
  } ]
}
"""


def _previous_word_model(path: Path) -> None:
    """OUTPUT = the state (the previous step's INPUT), OUTPUT_STATE = INPUT: BYTES throughout."""
    from onnx import TensorProto, helper, save

    def tensor(name: str) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.STRING, ["batch", 1])

    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["INPUT_STATE"], ["OUTPUT"]),
            helper.make_node("Identity", ["INPUT"], ["OUTPUT_STATE"]),
        ],
        "previous_word",
        [tensor("INPUT"), tensor("INPUT_STATE")],
        [tensor("OUTPUT"), tensor("OUTPUT_STATE")],
    )
    path.parent.mkdir(parents=True)
    save(helper.make_model(graph), str(path))


def test_bytes_state_starts_empty_and_carries_over(tmp_path: Path) -> None:
    _previous_word_model(tmp_path / "previous_word" / "1" / "model.onnx")
    (tmp_path / "previous_word" / "config.pbtxt").write_text(BYTES_STATE_CONFIG)
    with running_server(tmp_path) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            answers = []
            for step, word in enumerate([b"alpha", "béta".encode(), b"gamma"]):
                item = httpclient.InferInput("INPUT", [1, 1], "BYTES")
                item.set_data_from_numpy(np.array([[word]], dtype=np.object_))
                result = client.infer(
                    "previous_word",
                    [item],
                    sequence_id=77,
                    sequence_start=step == 0,
                    sequence_end=step == 2,
                )
                answers.append(result.as_numpy("OUTPUT")[0, 0])
        finally:
            client.close()
    assert answers == [b"", b"alpha", "béta".encode()]
