"""Server-level behaviour: every datatype end to end, failed models, body limits, SIGTERM drain."""

from __future__ import annotations

import http.client
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto

import generate_models
from tests.integration.http_helpers import get_json, post_json, request
from tests.integration.server import RunningServer, running_server

ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BF16": TensorProto.BFLOAT16,
    "BYTES": TensorProto.STRING,
}


def _sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([[b"a", b"", b"\xc3\xa9t\xc3\xa9", b"x" * 50]] * 2, dtype=np.object_)
    if datatype == "BOOL":
        return np.array([[True, False, True, True]] * 2)
    if datatype == "BF16":
        return np.array([[1.5, -2.0, 0.25, 8.0]] * 2, dtype=ml_dtypes.bfloat16)
    dtype = np.dtype(datatype.lower().replace("fp", "float"))
    return (np.arange(8).reshape(2, 4) * 3).astype(dtype)


@pytest.fixture(scope="module")
def mixed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("mixed")
    for datatype, onnx_type in ONNX_TYPES.items():
        generate_models.identity_model(
            repository / f"id_{datatype.lower()}" / "1" / "model.onnx", onnx_type
        )
    generate_models.simple_model(repository / "simple" / "1" / "model.onnx")
    (repository / "simple" / "config.pbtxt").write_text(generate_models.SIMPLE_CONFIG)
    (repository / "broken" / "1").mkdir(parents=True)
    (repository / "broken" / "1" / "model.onnx").write_bytes(b"not a model")
    (repository / "badconfig" / "1").mkdir(parents=True)
    (repository / "badconfig" / "config.pbtxt").write_text("max_batch_size: oops")
    with running_server(repository, "--http-max-body-bytes", "100000") as server:
        yield server


def test_failed_models_are_reported_and_others_serve(mixed_server: RunningServer) -> None:
    status, index = post_json(mixed_server.http_port, "/v2/repository/index", {})
    assert status == 200
    rows = {row["name"]: row for row in index}
    assert rows["broken"]["state"] == "UNAVAILABLE" and "cannot read" in rows["broken"]["reason"]
    assert (
        rows["badconfig"]["state"] == "UNAVAILABLE"
        and "max_batch_size" in rows["badconfig"]["reason"]
    )
    assert rows["simple"]["state"] == "READY"
    assert "model 'broken' version 1 failed to load" in mixed_server.log_text()
    # Triton's strict readiness: not every model loaded, so the server is not ready; live it is.
    assert request(mixed_server.http_port, "GET", "/v2/health/ready")[0] == 503
    assert request(mixed_server.http_port, "GET", "/v2/health/live")[0] == 200
    document = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    status, body = post_json(mixed_server.http_port, "/v2/models/broken/infer", document)
    assert status == 503 and "no ready version" in body["error"]
    assert request(mixed_server.http_port, "GET", "/v2/models/broken/ready")[0] == 400


@pytest.mark.parametrize("datatype", list(ONNX_TYPES))
@pytest.mark.parametrize("binary", [True, False])
def test_every_datatype_round_trips(
    mixed_server: RunningServer, datatype: str, binary: bool
) -> None:
    if datatype == "BF16" and not binary:
        pytest.skip("tritonclient sends BF16 only as binary data")
    client = httpclient.InferenceServerClient(mixed_server.http_url)
    model = f"id_{datatype.lower()}"
    status, _config = get_json(mixed_server.http_port, f"/v2/models/{model}/config")
    if status != 200:
        pytest.skip(f"ONNX Runtime cannot load an Identity of {datatype} here")
    array = _sample(datatype)
    item = httpclient.InferInput("INPUT0", list(array.shape), datatype)
    item.set_data_from_numpy(array, binary_data=binary)
    output = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
    result = client.infer(model, [item], outputs=[output])
    returned = result.as_numpy("OUTPUT0")
    if datatype == "BYTES" and not binary:
        expected = [item.decode() for item in array.reshape(-1)]
        assert [v.decode() if isinstance(v, bytes) else v for v in returned.reshape(-1)] == expected
    else:
        np.testing.assert_array_equal(returned, array)
    assert result.get_response()["outputs"][0]["datatype"] == datatype


def test_oversized_body_is_413_and_server_keeps_serving(mixed_server: RunningServer) -> None:
    status, _, payload = request(
        mixed_server.http_port, "POST", "/v2/models/simple/infer", b"x" * 200_000
    )
    assert status == 413 and b"limit" in payload
    document = {
        "inputs": [
            {"name": n, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
            for n in ("INPUT0", "INPUT1")
        ]
    }
    status, body = post_json(mixed_server.http_port, "/v2/models/simple/infer", document)
    assert status == 200, body


def test_sigterm_finishes_accepted_requests(tmp_path: Path) -> None:
    generate_models.mlp_model(tmp_path / "mlp" / "1" / "model.onnx", (64, 2048, 2048, 64))
    document = {
        "inputs": [{"name": "input", "shape": [4, 64], "datatype": "FP32", "data": [1.0] * 256}]
    }
    body = json.dumps(document).encode()
    with running_server(tmp_path, "--default-max-batch-size", "0") as server:
        connections = [http.client.HTTPConnection("127.0.0.1", server.http_port) for _ in range(16)]
        for connection in connections:
            connection.request("POST", "/v2/models/mlp/infer", body=body)
        time.sleep(0.02)  # let the server read them: accepted, queued behind one instance
        server.process.send_signal(signal.SIGTERM)
        statuses = [connection.getresponse().status for connection in connections]
        for connection in connections:
            connection.close()
        assert statuses == [200] * 16
        assert server.process.wait(timeout=30) == 0
        assert "stopped" in server.log_text()


def test_json_config_repository(tmp_path: Path) -> None:
    generate_models.simple_model(tmp_path / "simple_json" / "1" / "model.onnx")
    config = {
        "max_batch_size": 2,
        "input": [{"name": f"INPUT{i}", "data_type": "TYPE_INT32", "dims": [16]} for i in (0, 1)],
        "output": [{"name": "OUTPUT0", "data_type": "TYPE_INT32", "dims": [16]}],
        "version_policy": {"all": {}},
    }
    (tmp_path / "simple_json" / "config.json").write_text(json.dumps(config))
    (tmp_path / "simple_json" / "2").mkdir()
    generate_models.simple_model(tmp_path / "simple_json" / "2" / "model.onnx")
    with running_server(tmp_path) as server:
        status, metadata = get_json(server.http_port, "/v2/models/simple_json")
        assert status == 200 and metadata["versions"] == ["1", "2"]
        assert [o["name"] for o in metadata["outputs"]] == ["OUTPUT0"]
        status, config_json = get_json(server.http_port, "/v2/models/simple_json/versions/1/config")
        assert config_json["max_batch_size"] == 2
