"""Triton's trace files written by a running server (`--trace-config triton,file=...`) and
read back: trace ids follow the order requests arrived in, an ensemble's steps are traces
whose `parent_id` is the ensemble request's trace, and each trace has the
`INFER_RESPONSE_COMPLETE` marks Triton's frontends record (one for a unary answer and for a
gRPC stream's request, one per response of a generate stream)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import generate_models
from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually
from tests.integration.test_ensemble_add_sub import ENSEMBLE, ENSEMBLE_CONFIG
from tests.integration.test_generate import stream_events
from tests.integration.test_latency_summaries import THREE, THREE_CONFIG, stream_three
from tests.integration.test_trace_logging import HTTP_SEND, MARKS

GRPC_READ = ["GRPC_WAITREAD_START", "GRPC_WAITREAD_END"]

# Request 1 waits in its instance until request 2 has run on the other one, so 2 finishes first.
GATED = """
import pathlib
import time

import numpy as np

HERE = pathlib.Path({folder!r})


class InferdModel:
    def execute(self, batch):
        value = int(batch.inputs["IN"][0])
        (HERE / f"started.{{value}}").touch()
        if value == 1:  # held until the test has the second request's answer
            deadline = time.monotonic() + 60
            while not (HERE / "open").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return {{"OUT": np.array([value], np.int32)}}
"""
GATED_CONFIG = """
name: "gated"
backend: "python"
max_batch_size: 0
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
instance_group [ { count: 2, kind: KIND_CPU } ]
"""

# Calls `simple`, which does not batch and has an idle instance: the call runs on this thread.
CALLER = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            inputs = [pb_utils.get_input_tensor_by_name(request, n) for n in ("INPUT0", "INPUT1")]
            call = pb_utils.InferenceRequest(
                model_name="simple", requested_output_names=["OUTPUT0"], inputs=inputs
            )
            out = pb_utils.get_output_tensor_by_name(call.exec(), "OUTPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", out)]))
        return responses
"""
CALLER_CONFIG = """
name: "caller"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] },
  { name: "INPUT1", data_type: TYPE_INT32, dims: [ 16 ] }
]
output [ { name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 16 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
parameters { key: "isolation" value: { string_value: "none" } }
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trace_files")


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[RunningServer]:
    root = folder / "models"
    generate_models.simple_model(root / "simple" / "1" / "model.onnx")
    (root / "simple" / "config.pbtxt").write_text(generate_models.SIMPLE_CONFIG)
    (root / ENSEMBLE / "1").mkdir(parents=True)
    (root / ENSEMBLE / "config.pbtxt").write_text(ENSEMBLE_CONFIG)
    write(root, "three", THREE, THREE_CONFIG)
    write(root, "gated", GATED.format(folder=str(folder)), GATED_CONFIG)
    write(root, "caller", CALLER, CALLER_CONFIG)
    trace = ("level=TIMESTAMPS", "rate=1", f"triton,file={folder / 'start.json'}")
    with running_server(root, *(arg for item in trace for arg in ("--trace-config", item))) as up:
        yield up


@pytest.fixture
def trace_file(server: RunningServer, tmp_path: Path) -> Iterator[Path]:
    """A file of its own for the test's traces: one file per trace."""
    path = tmp_path / "trace.json"
    with closing(httpclient.InferenceServerClient(server.http_url)) as client:
        client.update_trace_settings(settings={"trace_file": str(path), "log_frequency": "1"})
        yield path
        client.update_trace_settings(settings={"trace_file": None, "log_frequency": None})


def traces(path: Path, count: int) -> dict[int, dict[str, Any]]:
    """The first `count` traces written (`<path>.0` ...), each trace's objects merged, by id."""
    merged: dict[int, dict[str, Any]] = {}

    def written() -> bool:
        try:
            files = [json.loads(Path(f"{path}.{index}").read_text()) for index in range(count)]
        except (OSError, ValueError):
            return False
        for items in files:
            for item in items:
                merged.setdefault(item["id"], {}).update(item)
        return True

    eventually(written)
    return merged


def names(trace: dict[str, Any]) -> list[str]:
    return [mark["name"] for mark in trace["timestamps"]]


def simple_inputs(module: Any) -> list[Any]:
    inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for item in inputs:
        item.set_data_from_numpy(np.ones((1, 16), np.int32))
    return inputs


def test_a_unary_answer_has_one_response_complete_mark(
    server: RunningServer, trace_file: Path
) -> None:
    with closing(httpclient.InferenceServerClient(server.http_url)) as client:
        client.infer("simple", simple_inputs(httpclient), request_id="r-7")
    (trace,) = traces(trace_file, 1).values()
    assert trace["request_id"] == "r-7"
    assert "parent_id" not in trace
    assert names(trace) == ["HTTP_RECV_START", "HTTP_RECV_END", *MARKS, *HTTP_SEND]
    times = [mark["ns"] for mark in trace["timestamps"]]
    assert times == sorted(times)


def test_a_grpc_answers_send_is_marked(server: RunningServer, trace_file: Path) -> None:
    with closing(grpcclient.InferenceServerClient(server.grpc_url)) as client:
        client.infer("simple", simple_inputs(grpcclient))
    (trace,) = traces(trace_file, 1).values()
    assert names(trace) == [*GRPC_READ, *MARKS, "GRPC_SEND_START", "GRPC_SEND_END"]


def test_a_failed_requests_trace_is_written_without_send_marks(
    server: RunningServer, trace_file: Path
) -> None:
    wrong = [httpclient.InferInput(name, [1, 8], "INT32") for name in ("INPUT0", "INPUT1")]
    for item in wrong:
        item.set_data_from_numpy(np.ones((1, 8), np.int32))
    with (
        closing(httpclient.InferenceServerClient(server.http_url)) as client,
        pytest.raises(InferenceServerException),
    ):
        client.infer("simple", wrong)  # refused by the engine: [1, 8] is not [-1, 16]
    (trace,) = traces(trace_file, 1).values()
    assert names(trace)[:3] == ["HTTP_RECV_START", "HTTP_RECV_END", "REQUEST_START"]
    assert names(trace)[-1] == "REQUEST_END"


def test_a_models_call_is_traced_as_it_arrives_as_a_clients_request_is(
    server: RunningServer, trace_file: Path
) -> None:
    with closing(httpclient.InferenceServerClient(server.http_url)) as client:
        client.infer("caller", simple_inputs(httpclient))
    written = traces(trace_file, 2)
    (caller,) = [t for t in written.values() if t["model_name"] == "caller"]
    (called,) = [t for t in written.values() if t["model_name"] == "simple"]
    assert names(called)[0] == "REQUEST_START"  # made in the server: no frontend marks
    assert called["id"] > caller["id"]  # numbered as it arrived, after its caller
    assert called["parent_id"] == caller["id"]


def test_ensemble_steps_are_children_of_the_ensemble_trace(
    server: RunningServer, trace_file: Path
) -> None:
    with closing(grpcclient.InferenceServerClient(server.grpc_url)) as client:
        client.infer(ENSEMBLE, simple_inputs(grpcclient))
    written = traces(trace_file, 7)  # the ensemble's and its six steps'
    (ensemble,) = [t for t in written.values() if t["model_name"] == ENSEMBLE]
    steps = [t for t in written.values() if t["model_name"] == "simple"]
    assert len(steps) == 6
    # The frontend's marks are the ensemble request's; its steps were made in the server.
    assert names(ensemble)[:2] == GRPC_READ
    assert {names(step)[0] for step in steps} == {"REQUEST_START"}
    assert "parent_id" not in ensemble
    assert {step["parent_id"] for step in steps} == {ensemble["id"]}
    # Numbered as they arrived: the ensemble's request before any of its steps.
    assert min(step["id"] for step in steps) > ensemble["id"]
    for step in steps:
        (start,) = [m["ns"] for m in step["timestamps"] if m["name"] == "REQUEST_START"]
        assert start >= next(m["ns"] for m in ensemble["timestamps"])


def test_ids_follow_arrival_not_completion(
    server: RunningServer, folder: Path, trace_file: Path
) -> None:
    def call(value: int) -> None:
        tensor = httpclient.InferInput("IN", [1], "INT32")
        tensor.set_data_from_numpy(np.array([value], np.int32))
        with closing(httpclient.InferenceServerClient(server.http_url)) as client:
            client.infer("gated", [tensor])

    first = threading.Thread(target=call, args=(1,))
    first.start()
    eventually((folder / "started.1").exists)  # arrived, and held until the second has ended
    call(2)
    (folder / "open").touch()
    first.join(60)
    written = traces(trace_file, 2)
    ends = {t["id"]: next(m["ns"] for m in t["timestamps"] if m["name"] == "REQUEST_END")
            for t in written.values()}  # fmt: skip
    first_id, second_id = sorted(written)
    assert ends[first_id] > ends[second_id]  # the first to arrive finished last


def test_a_grpc_streams_request_marks_its_first_response(
    server: RunningServer, trace_file: Path
) -> None:
    stream_three(server, [4])
    (trace,) = traces(trace_file, 1).values()
    assert trace["model_name"] == "three"
    assert names(trace)[:3] == [*GRPC_READ, "REQUEST_START"]
    assert names(trace).count("INFER_RESPONSE_COMPLETE") == 1


def test_a_generate_stream_marks_every_response(server: RunningServer, trace_file: Path) -> None:
    status, _, events = stream_events(server, "three", json.dumps({"IN": [4]}))
    assert (status, len(events)) == (200, 3)
    (trace,) = traces(trace_file, 1).values()
    # Three responses, then the final flag alone: each a response callback in Triton.
    assert names(trace).count("INFER_RESPONSE_COMPLETE") == 4
    assert names(trace)[-1] == "REQUEST_END"


def test_which_file_each_trace_goes_to(model_repository: Path, tmp_path: Path) -> None:
    """As Triton writes them (qa/L0_trace's trace_count and log_frequency cases): traces taken
    under replaced settings go to the trace file, a spent trace_count's to the next indexed
    file at once, and at stop what a log_frequency left over to the next indexed file."""
    path = tmp_path / "t.json"
    start = [
        a
        for s in ("level=TIMESTAMPS", "rate=1", f"triton,file={path}")
        for a in ("--trace-config", s)
    ]
    with (
        running_server(model_repository, *start) as up,
        closing(httpclient.InferenceServerClient(up.http_url)) as client,
    ):
        inputs = simple_inputs(httpclient)
        for _ in range(3):
            client.infer("simple", inputs)
        client.update_trace_settings(settings={"trace_count": "2"})
        for _ in range(3):
            client.infer("simple", inputs)
        eventually(Path(f"{path}.0").exists)  # the count spent: written before the stop
        client.update_trace_settings("simple", {"trace_count": "-1", "log_frequency": "2"})
        for _ in range(3):
            client.infer("simple", inputs)

    def ids(written: Path) -> set[int]:
        return {item["id"] for item in json.loads(written.read_text())}

    counts = [len(ids(Path(f"{path}.{index}"))) for index in range(3)]
    assert (len(ids(path)), counts) == (3, [2, 2, 1])
    assert not Path(f"{path}.3").exists()
