"""Triton's trace level TENSORS on a running server, turned on at run time through
tritonclient's `update_trace_settings`: the trace file holds each traced request's inputs
(TENSOR_QUEUE_INPUT) and outputs (TENSOR_BACKEND_OUTPUT) as Triton writes them, read back the
way Triton's `trace_summary.py` reads them; a decoupled model's trace has every response's
outputs."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually
from tests.integration.test_latency_summaries import THREE, THREE_CONFIG, stream_three

NUMPY = {"INT32": np.int32, "FP32": np.float32, "BYTES": np.object_}


@pytest.fixture(scope="module")
def server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("tensors")
    for name in ("simple", "mlp"):
        (root / name).symlink_to(model_repository / name, target_is_directory=True)
    write(root, "three", THREE, THREE_CONFIG)
    with running_server(root) as running:
        yield running


def trace_file_settings(path: Path, *levels: str) -> dict[str, Any]:
    return {
        "trace_level": list(levels),
        "trace_rate": "1",
        "log_frequency": "1",
        "trace_file": str(path),
    }


def written(path: Path) -> list[dict[str, Any]]:
    """The objects of a trace file, once it is written (whole)."""
    objects: list[dict[str, Any]] = []

    def complete() -> bool:
        try:
            objects.extend(json.loads(path.read_text()))
        except (OSError, ValueError):
            return False
        return True

    eventually(complete)
    return objects


def tensors(objects: list[dict[str, Any]], activity: str) -> dict[str, np.ndarray[Any, Any]]:
    """{name: array} of one activity's tensors, decoded as Triton's trace_summary.py does."""
    found = {}
    for item in objects:
        if item.get("activity") != activity:
            continue
        tensor = item["tensor"]
        dtype = NUMPY[tensor["dtype"]]
        if dtype is np.object_:
            values: list[Any] = next(csv.reader([tensor["data"]], skipinitialspace=True))
        else:
            values = [float(v) for v in tensor["data"].split(",")]
        shape = [int(d) for d in tensor["shape"].split(",")]
        found[tensor["name"]] = np.array(values, dtype=dtype).reshape(shape)
    return found


def test_tensors_and_timestamps_of_a_request(server: RunningServer, tmp_path: Path) -> None:
    inputs = [httpclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    first, second = np.arange(16, dtype=np.int32).reshape(1, 16), np.full((1, 16), 3, np.int32)
    inputs[0].set_data_from_numpy(first)
    inputs[1].set_data_from_numpy(second, binary_data=False)
    with closing(httpclient.InferenceServerClient(server.http_url)) as client:
        levels = ["TIMESTAMPS", "TENSORS"]
        client.update_trace_settings("simple", trace_file_settings(tmp_path / "t.json", *levels))
        try:
            client.infer("simple", inputs)
        finally:
            client.update_trace_settings("simple", dict.fromkeys(trace_file_settings(tmp_path)))
    objects = written(tmp_path / "t.json.0")
    assert {item["id"] for item in objects} == {objects[0]["id"]}  # one trace
    assert objects[0]["model_name"] == "simple"
    assert len(objects[1]["timestamps"]) == 12  # HTTP_RECV_START ... HTTP_SEND_END
    assert [(o["activity"], o["tensor"]["name"]) for o in objects[2:]] == [
        ("TENSOR_QUEUE_INPUT", "INPUT0"),
        ("TENSOR_QUEUE_INPUT", "INPUT1"),
        ("TENSOR_BACKEND_OUTPUT", "OUTPUT0"),
        ("TENSOR_BACKEND_OUTPUT", "OUTPUT1"),
    ]
    assert objects[2]["tensor"] == {
        "name": "INPUT0",
        "data": ",".join(str(v) for v in range(16)),
        "shape": "1,16",
        "dtype": "INT32",
    }
    received = tensors(objects, "TENSOR_QUEUE_INPUT")
    np.testing.assert_array_equal(received["INPUT1"], second)
    sent = tensors(objects, "TENSOR_BACKEND_OUTPUT")
    np.testing.assert_array_equal(sent["OUTPUT0"], first + second)
    np.testing.assert_array_equal(sent["OUTPUT1"], first - second)


def test_tensors_only_over_grpc(server: RunningServer, tmp_path: Path) -> None:
    data = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    tensor = grpcclient.InferInput("input", [2, 8], "FP32")
    tensor.set_data_from_numpy(data)
    with closing(grpcclient.InferenceServerClient(server.grpc_url)) as client:
        client.update_trace_settings("", trace_file_settings(tmp_path / "g.json", "TENSORS"))
        try:
            result = client.infer("mlp", [tensor])
        finally:
            client.update_trace_settings("", dict.fromkeys(trace_file_settings(tmp_path)))
    objects = written(tmp_path / "g.json.0")
    assert not [item for item in objects if "timestamps" in item]
    # Floats with 6 significant digits, as Triton writes them.
    np.testing.assert_allclose(tensors(objects, "TENSOR_QUEUE_INPUT")["input"], data, rtol=1e-5)
    sent = tensors(objects, "TENSOR_BACKEND_OUTPUT")["output"]
    np.testing.assert_allclose(sent, result.as_numpy("output"), rtol=1e-5, atol=1e-6)


def test_a_decoupled_models_trace_has_every_response(server: RunningServer, tmp_path: Path) -> None:
    with closing(grpcclient.InferenceServerClient(server.grpc_url)) as client:
        client.update_trace_settings("three", trace_file_settings(tmp_path / "d.json", "TENSORS"))
        stream_three(server, [5])
        # The request ends after its last response reached the client: read its trace first.
        objects = written(tmp_path / "d.json.0")
        client.update_trace_settings("three", dict.fromkeys(trace_file_settings(tmp_path)))
    outputs = [o["tensor"]["data"] for o in objects if o.get("activity") == "TENSOR_BACKEND_OUTPUT"]
    assert outputs == ["0", "1", "2"]
    assert tensors(objects, "TENSOR_QUEUE_INPUT")["IN"].tolist() == [5]
