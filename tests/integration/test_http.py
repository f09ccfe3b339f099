"""The V2 HTTP/REST frontend with the official tritonclient (JSON and binary) and plain HTTP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.http_helpers import get_json, post_json, request
from tests.integration.server import RunningServer

SIMPLE_INPUTS = {
    "INPUT0": np.arange(32, dtype=np.int32).reshape(2, 16),
    "INPUT1": np.full((2, 16), 3, dtype=np.int32),
}


@pytest.fixture(scope="module")
def client(server: RunningServer) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.http_url)


def _inputs(arrays: dict[str, np.ndarray], binary: bool) -> list[httpclient.InferInput]:
    inputs = []
    for name, array in arrays.items():
        item = httpclient.InferInput(
            name, list(array.shape), "INT32" if array.dtype == np.int32 else "FP32"
        )
        item.set_data_from_numpy(array, binary_data=binary)
        inputs.append(item)
    return inputs


@pytest.mark.parametrize("binary", [False, True])
def test_simple_matches_onnxruntime(
    client: httpclient.InferenceServerClient, model_repository: Path, binary: bool
) -> None:
    session = ort.InferenceSession(str(model_repository / "simple" / "1" / "model.onnx"))
    expected = session.run(["OUTPUT0", "OUTPUT1"], SIMPLE_INPUTS)
    outputs = [
        httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")
    ]
    result = client.infer(
        "simple", _inputs(SIMPLE_INPUTS, binary), outputs=outputs, request_id="r-1"
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), expected[0])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), expected[1])
    assert result.get_response()["id"] == "r-1"
    assert result.get_response()["model_version"] == "1"


def test_auto_completed_mlp_matches_onnxruntime(
    client: httpclient.InferenceServerClient, model_repository: Path
) -> None:
    session = ort.InferenceSession(str(model_repository / "mlp" / "1" / "model.onnx"))
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    (expected,) = session.run(["output"], {"input": x})
    item = httpclient.InferInput("input", [3, 8], "FP32")
    item.set_data_from_numpy(x)
    result = client.infer("mlp", [item], model_version="1")
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6)


def test_requested_output_subset_and_mixed_binary(client: httpclient.InferenceServerClient) -> None:
    outputs = [httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)]
    result = client.infer("simple", _inputs(SIMPLE_INPUTS, True), outputs=outputs)
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), SIMPLE_INPUTS["INPUT0"] - 3)


def test_health_metadata_config_index(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    assert client.is_model_ready("simple", "1")
    assert not client.is_model_ready("simple", "2")
    assert not client.is_model_ready("nope")
    server = client.get_server_metadata()
    assert server["name"] == "inferd"
    assert "binary_tensor_data" in server["extensions"]
    metadata = client.get_model_metadata("simple")
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]}
    config = client.get_model_config("mlp")
    assert config["max_batch_size"] == 4
    assert config["input"][0]["dims"] == [8]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    index = client.get_model_repository_index()
    assert {(m["name"], m["state"]) for m in index} == {("mlp", "READY"), ("simple", "READY")}


def test_versioned_routes(server: RunningServer) -> None:
    status, metadata = get_json(server.http_port, "/v2/models/simple/versions/1")
    assert status == 200 and metadata["name"] == "simple"
    status, config = get_json(server.http_port, "/v2/models/simple/versions/1/config")
    assert status == 200 and config["max_batch_size"] == 8
    assert request(server.http_port, "GET", "/v2/models/simple/versions/1/ready")[0] == 200
    status, _ = post_json(server.http_port, "/v2/repository/index", {"ready": True})
    assert status == 200


def _json_infer(inputs: list[dict[str, object]], **extra: object) -> dict[str, object]:
    return {"inputs": inputs, **extra}


def _simple_input(name: str = "INPUT0", **overrides: object) -> dict[str, object]:
    item: dict[str, object] = {
        "name": name,
        "shape": [1, 16],
        "datatype": "INT32",
        "data": list(range(16)),
    }
    item.update(overrides)
    return item


BAD_REQUESTS = [
    pytest.param([_simple_input()], "missing required input(s)", id="missing-input"),
    pytest.param(
        [_simple_input(), _simple_input("INPUT1"), _simple_input("EXTRA")],
        "unexpected inference input",
        id="unknown-input",
    ),
    pytest.param(
        [_simple_input(), _simple_input("INPUT1", datatype="FP32")],
        "datatype FP32",
        id="wrong-datatype",
    ),
    pytest.param(
        [_simple_input(), _simple_input("INPUT1", datatype="FLOAT")],
        "unknown datatype",
        id="unknown-datatype",
    ),
    pytest.param(
        [_simple_input(), _simple_input("INPUT1", shape=[1, 15], data=list(range(15)))],
        "expects",
        id="wrong-shape",
    ),
    pytest.param(
        [_simple_input(), _simple_input("INPUT1", shape=[9, 16], data=list(range(144)))],
        "batch size 9",
        id="batch-too-large",
    ),
    pytest.param(
        [_simple_input(), _simple_input("INPUT1", data=list(range(15)))],
        "15 elements",
        id="element-count",
    ),
    pytest.param(
        [_simple_input(), _simple_input("INPUT1", data=["a"] * 16)], "INT32", id="strings-for-ints"
    ),
    pytest.param(
        [_simple_input(), _simple_input("INPUT1", data=[2**40] * 16)], "range", id="int-overflow"
    ),
    pytest.param(
        [_simple_input(), _simple_input("INPUT1", shape=[1, -16])], "shape", id="negative-shape"
    ),
    pytest.param(
        [_simple_input(), _simple_input("INPUT1", data=None)], "must be a list", id="null-data"
    ),
    pytest.param([_simple_input(), _simple_input()], "more than once", id="duplicate-input"),
    pytest.param([], "non-empty list", id="no-inputs"),
    pytest.param(
        [_simple_input(shape=[1] * 100, data=[1])], "at most 32", id="too-many-dimensions"
    ),
]


@pytest.mark.parametrize(("inputs", "message"), BAD_REQUESTS)
def test_bad_json_requests_are_400(
    server: RunningServer, inputs: list[dict[str, object]], message: str
) -> None:
    status, body = post_json(server.http_port, "/v2/models/simple/infer", _json_infer(inputs))
    assert status == 400, body
    assert message in body["error"]


def test_unknown_output_is_400(server: RunningServer) -> None:
    document = _json_infer([_simple_input(), _simple_input("INPUT1")], outputs=[{"name": "NOPE"}])
    status, body = post_json(server.http_port, "/v2/models/simple/infer", document)
    assert status == 400 and "unexpected inference output 'NOPE'" in body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/nope/infer",
        "/v2/models/simple/versions/7/infer",
        "/v2/models/simple/versions/x/infer",
    ],
)
def test_unknown_model_or_version_is_404(server: RunningServer, path: str) -> None:
    status, body = post_json(
        server.http_port, path, _json_infer([_simple_input(), _simple_input("INPUT1")])
    )
    assert status == 404, body
    assert "unknown" in body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/nope",
        "/v2/models/nope/config",
        "/v2/models/simple/versions/9",
        "/nothing",
        "/v2/models/simple/bogus",
    ],
)
def test_unknown_routes_are_404(server: RunningServer, path: str) -> None:
    status, _, body = request(server.http_port, "GET", path)
    assert status == 404 and b"error" in body


def test_wrong_method_is_405(server: RunningServer) -> None:
    assert request(server.http_port, "GET", "/v2/models/simple/infer")[0] == 405
    assert request(server.http_port, "DELETE", "/v2/health/live")[0] == 405


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[1, 2]",
        '{"inputs": "x"}',
        '{"inputs": [1]}',
        '{"inputs": [{"name": 5}]}',
        "",
        '{"id": 5, "inputs": []}',
    ],
)
def test_malformed_json_is_400(server: RunningServer, body: str) -> None:
    status, _, payload = request(server.http_port, "POST", "/v2/models/simple/infer", body)
    assert status == 400 and b"error" in payload


def _binary_body(sizes: tuple[int, int], data: bytes) -> tuple[bytes, int]:
    import json

    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [1, 16],
                    "datatype": "INT32",
                    "parameters": {"binary_data_size": sizes[0]},
                },
                {
                    "name": "INPUT1",
                    "shape": [1, 16],
                    "datatype": "INT32",
                    "parameters": {"binary_data_size": sizes[1]},
                },
            ]
        }
    ).encode()
    return header + data, len(header)


@pytest.mark.parametrize(
    ("sizes", "data_length", "header_delta", "message"),
    [
        ((64, 64), 128, 0, None),
        ((60, 64), 124, 0, "needs 64"),
        ((64, 64), 120, 0, "runs past the end"),
        ((64, 64), 136, 0, "no input claims"),
        ((64, -1), 128, 0, "non-negative"),
        ((64, 64), 128, 10_000, "outside"),
        ((64, 64), 128, -5, "malformed JSON"),
    ],
)
def test_binary_sizes(
    server: RunningServer,
    sizes: tuple[int, int],
    data_length: int,
    header_delta: int,
    message: str | None,
) -> None:
    body, header_length = _binary_body(sizes, np.arange(data_length // 4, dtype=np.int32).tobytes())
    headers = {"Inference-Header-Content-Length": str(header_length + header_delta)}
    status, _response_headers, payload = request(
        server.http_port, "POST", "/v2/models/simple/infer", body, headers
    )
    if message is None:
        assert status == 200, payload
        return
    assert status == 400, payload
    assert message in payload.decode()


def test_bad_header_length_value(server: RunningServer) -> None:
    body, _ = _binary_body((64, 64), bytes(128))
    headers = {"Inference-Header-Content-Length": "abc"}
    status, _, payload = request(server.http_port, "POST", "/v2/models/simple/infer", body, headers)
    assert status == 400 and b"not an integer" in payload


def test_binary_output_layout(server: RunningServer) -> None:
    body, header_length = _binary_body((64, 64), np.arange(32, dtype=np.int32).tobytes())
    headers = {"Inference-Header-Content-Length": str(header_length)}
    import json

    document = json.loads(body[:header_length])
    document["parameters"] = {"binary_data_output": True}
    header = json.dumps(document).encode()
    body = header + body[header_length:]
    headers = {"Inference-Header-Content-Length": str(len(header))}
    status, response_headers, payload = request(
        server.http_port, "POST", "/v2/models/simple/infer", body, headers
    )
    assert status == 200
    json_length = int(response_headers["inference-header-content-length"])
    response = json.loads(payload[:json_length])
    assert [o["parameters"]["binary_data_size"] for o in response["outputs"]] == [64, 64]
    out0 = np.frombuffer(payload[json_length : json_length + 64], dtype=np.int32)
    np.testing.assert_array_equal(out0, np.arange(16) + np.arange(16, 32))


def test_gzip_request_and_oversized_body(server: RunningServer) -> None:
    import gzip
    import json

    document = _json_infer([_simple_input(), _simple_input("INPUT1")])
    compressed = gzip.compress(json.dumps(document).encode())
    status, _, payload = request(
        server.http_port,
        "POST",
        "/v2/models/simple/infer",
        compressed,
        {"Content-Encoding": "gzip"},
    )
    assert status == 200, payload
    status, _, payload = request(
        server.http_port,
        "POST",
        "/v2/models/simple/infer",
        b"garbage",
        {"Content-Encoding": "gzip"},
    )
    assert status == 400
    status, _, _ = request(
        server.http_port, "POST", "/v2/models/simple/infer", b"x", {"Content-Encoding": "br"}
    )
    assert status == 400


def test_server_keeps_serving_after_bad_input(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.infer("simple", _inputs({"INPUT0": SIMPLE_INPUTS["INPUT0"]}, True))
    assert "missing required input(s)" in str(error.value)
    result = client.infer("simple", _inputs(SIMPLE_INPUTS, True))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), SIMPLE_INPUTS["INPUT0"] + 3)
