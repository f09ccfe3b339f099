"""Hostile input to the sequence batcher, ensembles and the Python backend, through the real
server over plain HTTP and raw gRPC messages: every bad request gets a clear 400 /
INVALID_ARGUMENT (503 / UNAVAILABLE when the server is full), a model's own failure is a 500
for that request only, and the server keeps serving."""

from __future__ import annotations

import json
import shutil
import struct
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

import generate_models
from tests.integration.http_helpers import post_json, request
from tests.integration.server import RunningServer, running_server

EXAMPLES = Path(generate_models.__file__).parent / "model_repository"
PYTHON_SEQ = "sequence_accumulate"  # Python model; CORRID is UINT64
STATE_SEQ = "sequence_accumulate_state"  # ONNX model with implicit state; any kind of id
SMALL_SEQ = "sequence_small"  # one instance, two slots, a backlog of two
PIPELINE = "pipeline"
COPIED = (
    PYTHON_SEQ,
    STATE_SEQ,
    PIPELINE,
    "pipeline_preprocess",
    "pipeline_branch_a",
    "pipeline_branch_b",
    "pipeline_postprocess",
)
# Answers what MODE asks for: the right output, or one of the ways a model gets it wrong.
WRONG_MODEL = """
import numpy as np

class InferdModel:
    def execute(self, batch):
        values, mode = batch.inputs["IN"], batch.inputs["MODE"][0, 0]
        if mode == b"rows":
            return {"OUT": np.concatenate([values, values])}
        if mode == b"missing":
            return {}
        if mode == b"answers":
            return [{"OUT": values}, {"OUT": values}]
        if mode == b"none":
            return None
        if mode == b"raise":
            raise ValueError("the model refuses")
        if mode == b"text":
            return {"OUT": np.full(values.shape, "a", dtype=object)}
        return {"OUT": values * 2}
"""
WRONG_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 8
input [
  {{ name: "IN", data_type: TYPE_FP32, dims: [ -1 ] }},
  {{ name: "MODE", data_type: TYPE_STRING, dims: [ 1 ] }}
]
output [ {{ name: "OUT", data_type: TYPE_FP32, dims: [ -1 ] }} ]
parameters {{ key: "isolation" value: {{ string_value: "{isolation}" }} }}
"""
WRONG = {"none": "wrong_in_process", "process": "wrong_isolated"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("hostile")
    for name in COPIED:
        shutil.copytree(EXAMPLES / name, root / name)
    small = (EXAMPLES / STATE_SEQ / "config.pbtxt").read_text()
    small = small.replace(STATE_SEQ, SMALL_SEQ).replace("max_batch_size: 8", "max_batch_size: 2")
    small = small.replace("count: 2", "count: 1").replace("5000000", "300000")  # idle: 0.3 s
    backlog = 'parameters { key: "inferd.max_sequence_backlog" value: { string_value: "2" } }\n'
    shutil.copytree(EXAMPLES / STATE_SEQ / "1", root / SMALL_SEQ / "1")
    (root / SMALL_SEQ / "config.pbtxt").write_text(small + backlog)
    for isolation, name in WRONG.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.py").write_text(WRONG_MODEL)
        config = WRONG_CONFIG.format(name=name, isolation=isolation)
        (root / name / "config.pbtxt").write_text(config)
    with running_server(root) as running:
        yield running


def tensor(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def infer(port: int, model: str, document: dict[str, Any]) -> tuple[int, Any]:
    return post_json(port, f"/v2/models/{model}/infer", document)


def step(parameters: dict[str, Any], value: int = 1) -> dict[str, Any]:
    return {"inputs": [tensor("INPUT", "INT32", [1, 1], [value])], "parameters": parameters}


# ---- sequence parameters -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "parameters", "expected"),
    [
        (STATE_SEQ, {"sequence_id": 7.5}, "must be an integer or a string"),
        (STATE_SEQ, {"sequence_id": True}, "must be an integer or a string"),
        (STATE_SEQ, {"sequence_id": None}, "must be an integer or a string"),
        (STATE_SEQ, {"sequence_id": [1]}, "must be an integer or a string"),
        (STATE_SEQ, {"sequence_id": {"a": 1}}, "must be an integer or a string"),
        (STATE_SEQ, {"sequence_id": 2**64}, "must be an integer or a string"),
        (STATE_SEQ, {"sequence_id": -3}, "out of range"),
        (STATE_SEQ, {"sequence_id": 0}, "non-zero or non-empty correlation ID"),
        (STATE_SEQ, {"sequence_id": ""}, "non-zero or non-empty correlation ID"),
        (PYTHON_SEQ, {"sequence_id": "7"}, "takes unsigned integer sequence ids"),
        (STATE_SEQ, {"sequence_id": 3, "sequence_start": "true"}, "must be a boolean"),
        (STATE_SEQ, {"sequence_id": 3, "sequence_start": 1}, "must be a boolean"),
        (STATE_SEQ, {"sequence_id": 3, "sequence_start": None}, "must be a boolean"),
        (STATE_SEQ, {"sequence_id": 3, "sequence_end": 0}, "must be a boolean"),
        (STATE_SEQ, {"sequence_id": 987654, "sequence_start": False}, "the START flag"),
    ],
)
def test_bad_sequence_parameters_are_400(
    server: RunningServer, model: str, parameters: dict[str, Any], expected: str
) -> None:
    status, body = infer(server.http_port, model, step({"sequence_start": True} | parameters))
    assert (status, expected in body["error"]) == (400, True), body


def test_extreme_but_valid_sequence_ids(server: RunningServer) -> None:
    for model, sequence_id in [
        (PYTHON_SEQ, 2**64 - 1),
        (PYTHON_SEQ, 2**63),
        (STATE_SEQ, "x" * 100_000),
        (STATE_SEQ, "é"),
    ]:
        parameters = {"sequence_id": sequence_id, "sequence_start": True, "sequence_end": True}
        status, body = infer(server.http_port, model, step(parameters, 5))
        assert (status, body["outputs"][0]["data"]) == (200, [5]), (model, body)


def test_sequence_request_shapes_and_names(server: RunningServer) -> None:
    start = {"sequence_id": 31, "sequence_start": True, "sequence_end": True}
    cases = [
        ([tensor("INPUT", "INT32", [2, 1], [1, 2])], "must specify batch-size 1"),
        ([tensor("INPUT", "INT32", [0, 1], [])], "has batch size 0"),
        ([tensor("INPUT", "BYTES", [1, 1], ["a"])], "has datatype BYTES"),
        (
            [tensor("INPUT", "INT32", [1, 1], [1]), tensor("INPUT_STATE", "INT32", [1, 1], [9])],
            "unexpected inference input 'INPUT_STATE'",
        ),
    ]
    for inputs, expected in cases:
        status, body = infer(server.http_port, STATE_SEQ, {"inputs": inputs, "parameters": start})
        assert (status, expected in body["error"]) == (400, True), body
    asked = {**step(start), "outputs": [{"name": "OUTPUT_STATE"}]}
    status, body = infer(server.http_port, STATE_SEQ, asked)
    assert (status, "unexpected inference output 'OUTPUT_STATE'" in body["error"]) == (400, True)


def grpc_step(model: str, parameters: dict[str, tuple[str | None, Any]]) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name="INPUT", datatype="INT32", shape=[1, 1]).contents.int_contents.append(2)
    for key, (kind, value) in parameters.items():
        if kind is None:
            message.parameters[key].CopyFrom(pb.InferParameter())  # no oneof set
        else:
            setattr(message.parameters[key], kind, value)
    return message


@pytest.mark.parametrize(
    ("model", "sequence_id", "expected"),
    [
        (STATE_SEQ, ("double_param", 3.0), "must be an integer or a string"),
        (STATE_SEQ, ("bool_param", True), "must be an integer or a string"),
        (STATE_SEQ, (None, None), "has no value"),
        (STATE_SEQ, ("int64_param", -3), "out of range"),
        (STATE_SEQ, ("string_param", ""), "non-zero or non-empty"),
        (PYTHON_SEQ, ("string_param", "abc"), "takes unsigned integer sequence ids"),
    ],
)
def test_grpc_sequence_id_of_every_kind(
    server: RunningServer, model: str, sequence_id: tuple[str | None, Any], expected: str
) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        flags = {"sequence_start": ("bool_param", True), "sequence_end": ("bool_param", True)}
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(grpc_step(model, {"sequence_id": sequence_id, **flags}), timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert expected in (raised.value.details() or "")
        for kind in ("string_param", "int64_param", "double_param"):
            bad_flag = {"sequence_id": ("uint64_param", 2**64 - 1), "sequence_start": (kind, 1)}
            if kind == "string_param":
                bad_flag["sequence_start"] = (kind, "true")
            with pytest.raises(grpc.RpcError) as raised:
                stub.ModelInfer(grpc_step(model, bad_flag), timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---- the parameters Triton reserves, on any model ------------------------------------------


def doubled(parameters: dict[str, Any]) -> dict[str, Any]:
    """A request to the in-process WRONG model, which answers it (no sequences, no priorities)."""
    inputs = [tensor("IN", "FP32", [1, 1], [1.0]), tensor("MODE", "BYTES", [1, 1], ["ok"])]
    return {"inputs": inputs, "parameters": parameters}


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"priority": "1"}, "'priority' must be a non-negative integer"),
        ({"priority": -1}, "'priority' must be a non-negative integer"),
        ({"priority": True}, "'priority' must be a non-negative integer"),
        ({"priority": 1.5}, "'priority' must be a non-negative integer"),
        ({"timeout": "100"}, "'timeout' must be a non-negative integer"),
        ({"sequence_id": 1.5}, "'sequence_id' must be an integer or a string"),
        ({"sequence_start": "true"}, "'sequence_start' must be a boolean"),
        ({"sequence_end": 1}, "'sequence_end' must be a boolean"),
    ],
)
def test_reserved_parameters_of_the_wrong_kind_are_400_for_any_model(
    server: RunningServer, parameters: dict[str, Any], expected: str
) -> None:
    """As Triton's frontends refuse them, whether or not the model's scheduler reads them."""
    status, body = infer(server.http_port, WRONG["none"], doubled(parameters))
    assert (status, expected in body["error"]) == (400, True), body


def test_reserved_parameters_of_their_kind_pass_a_model_that_ignores_them(
    server: RunningServer,
) -> None:
    parameters = {"priority": 3, "timeout": 100, "sequence_id": "a", "sequence_start": True}
    status, body = infer(server.http_port, WRONG["none"], doubled(parameters))
    assert (status, body["outputs"][0]["data"]) == (200, [2.0]), body


def test_grpc_reserved_parameters_of_the_wrong_kind_for_any_model(server: RunningServer) -> None:
    def message(key: str, kind: str, value: Any) -> pb.ModelInferRequest:
        request = pb.ModelInferRequest(model_name=WRONG["none"])
        values = request.inputs.add(name="IN", datatype="FP32", shape=[1, 1])
        values.contents.fp32_contents.append(1)
        mode = request.inputs.add(name="MODE", datatype="BYTES", shape=[1, 1])
        mode.contents.bytes_contents.append(b"ok")
        setattr(request.parameters[key], kind, value)
        return request

    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for key, kind, value in [
            ("priority", "string_param", "1"),
            ("timeout", "double_param", 100.0),
            ("sequence_start", "int64_param", 1),
        ]:
            with pytest.raises(grpc.RpcError) as raised:
                stub.ModelInfer(message(key, kind, value), timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (key, kind)
            assert f"'{key}' must be" in (raised.value.details() or "")
        answer = stub.ModelInfer(message("priority", "uint64_param", 2), timeout=30)
        assert answer.outputs[0].name == "OUT"


def test_full_slots_and_backlog_answer_503_and_idle_sequences_free_them(
    server: RunningServer,
) -> None:
    """Two slots and a backlog of two: of 12 sequences starting at once 4 are accepted (two
    wait until the first two idle out after 0.3 s), the other 8 get 503 without waiting."""

    def start(key: int) -> int:
        parameters = {"sequence_id": f"flood-{key}", "sequence_start": True}
        return infer(server.http_port, SMALL_SEQ, step(parameters))[0]

    with ThreadPoolExecutor(12) as pool:
        statuses = Counter(pool.map(start, range(12)))
    assert statuses == {200: 4, 503: 8}


# ---- ensembles ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "outputs", "expected"),
    [
        ([tensor("FOO", "FP32", [1, 8], [0.5] * 8)], None, "unexpected inference input 'FOO'"),
        ([tensor("RAW", "BYTES", [1, 8], ["a"] * 8)], None, "has datatype BYTES"),
        ([tensor("RAW", "INT32", [1, 8], [1] * 8)], None, "has datatype INT32"),
        ([tensor("RAW", "FP32", [1, 7], [0.5] * 7)], None, "has shape [1, 7]"),
        ([tensor("RAW", "FP32", [8], [0.5] * 8)], None, "has shape [8]"),
        ([tensor("RAW", "FP32", [0, 8], [])], None, "has batch size 0"),
        ([tensor("RAW", "FP32", [9, 8], [0.5] * 72)], None, "has batch size 9"),
        ([tensor("RAW", "FP32", [1, 8], ["NaN"] * 8)], None, "does not hold FP32 values"),
        ([tensor("RAW", "FP32", [1, 8], [0.5] * 8)], ["features"], "output 'features'"),
        ([tensor("RAW", "FP32", [1, 8], [0.5] * 8)], ["NOPE"], "output 'NOPE'"),
        ([tensor("RAW", "FP32", [1, 8], [0.5] * 8)], ["LABEL", "LABEL"], "already exists"),
    ],
)
def test_bad_ensemble_requests_are_400(
    server: RunningServer, inputs: list[Any], outputs: list[str] | None, expected: str
) -> None:
    document: dict[str, Any] = {"inputs": inputs}
    if outputs is not None:
        document["outputs"] = [{"name": name} for name in outputs]
    status, body = infer(server.http_port, PIPELINE, document)
    assert (status, expected in body["error"]) == (400, True), body
    status, body = infer(
        server.http_port, PIPELINE, {"inputs": [tensor("RAW", "FP32", [1, 8], [0.5] * 8)]}
    )
    assert status == 200, body


# ---- the Python backend ------------------------------------------------------------------


def wrong_model_request(mode: str, values: list[float]) -> dict[str, Any]:
    return {
        "inputs": [
            tensor("IN", "FP32", [1, len(values)], values),
            tensor("MODE", "BYTES", [1, 1], [mode]),
        ]
    }


@pytest.mark.parametrize("model", WRONG.values())
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("rows", "has shape [2, 3], expected 1 rows first"),
        ("missing", "did not return output 'OUT'"),
        ("answers", "returned 2 answers for 1 requests"),
        ("none", "must return a dict of outputs or a list"),
        ("raise", "ValueError: the model refuses"),
        ("text", "does not convert to the config's float32"),
    ],
)
def test_model_answering_wrongly_fails_only_its_request(
    server: RunningServer, model: str, mode: str, expected: str
) -> None:
    status, body = infer(server.http_port, model, wrong_model_request(mode, [1, 2, 3]))
    assert (status, expected in body["error"]) == (500, True), body
    status, body = infer(server.http_port, model, wrong_model_request("ok", [1, 2, 3]))
    assert (status, body["outputs"][0]["data"]) == (200, [2, 4, 6])


def binary_request(inputs: list[tuple[str, str, list[int], bytes]]) -> tuple[bytes, dict[str, str]]:
    """A binary-data request: the JSON header, then each input's raw bytes."""
    header = json.dumps(
        {
            "inputs": [
                {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(b)}}
                for n, d, s, b in inputs
            ],
            "outputs": [{"name": "OUT", "parameters": {"binary_data": True}}],
        }
    ).encode()
    body = header + b"".join(raw for *_, raw in inputs)
    return body, {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize("model", WRONG.values())
def test_non_utf8_bytes_reach_a_python_model(server: RunningServer, model: str) -> None:
    mode = struct.pack("<I", 2) + b"\xff\xfe"
    values = np.array([1.5], np.float32).tobytes()
    body, headers = binary_request(
        [("IN", "FP32", [1, 1], values), ("MODE", "BYTES", [1, 1], mode)]
    )
    status, _, answer = request(
        server.http_port, "POST", f"/v2/models/{model}/infer", body, headers
    )
    assert status == 200, answer
    assert np.frombuffer(answer[-4:], np.float32).tolist() == [3.0]


def test_64_mib_requests_to_an_isolated_model(server: RunningServer) -> None:
    """Each request is 64 MiB: the worker's shared memory grows to fit, concurrently."""
    count = 16 * 1024 * 1024
    values = np.arange(count, dtype=np.float32) % 1000
    mode = struct.pack("<I", 2) + b"ok"
    body, headers = binary_request(
        [("IN", "FP32", [1, count], values.tobytes()), ("MODE", "BYTES", [1, 1], mode)]
    )
    path = f"/v2/models/{WRONG['process']}/infer"

    def one(_: int) -> tuple[int, bool]:
        status, _, answer = request(server.http_port, "POST", path, body, headers)
        doubled = np.frombuffer(answer[-count * 4 :], np.float32)
        return status, bool(np.array_equal(doubled, values * 2))

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(one, range(3))) == [(200, True)] * 3
