"""The last hostile HTTP inputs, over raw sockets and plain HTTP to a real server: bodies whose
size or count is refused before the work they ask for is done, empty path segments, ambiguous
inputs, malformed framing, and foreign `Host` headers (DNS rebinding)."""

from __future__ import annotations

import gzip
import json
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tests.integration.http_helpers import request
from tests.integration.server import RunningServer, running_server

LIMIT = 100_000  # --http-max-body-bytes of the server below
INFER = "/v2/models/simple/infer"


FLAGS = (
    "--http-max-body-bytes", str(LIMIT),
    "--model-control-mode", "explicit", "--load-model", "simple",
    "--enable-shared-memory",
)  # fmt: skip


@pytest.fixture(scope="module")
def server(model_repository: Path) -> Iterator[RunningServer]:
    with running_server(model_repository, *FLAGS) as running:
        yield running


def simple_input(name: str, data: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "datatype": "INT32", "shape": [1, 16], "data": data, **extra}


def error_of(status: int, body: bytes) -> str:
    assert 400 <= status < 500, (status, body)
    document = json.loads(body)
    assert set(document) == {"error"}, document
    error: str = document["error"]
    return error


def raw_exchange(port: int, data: bytes, then: bytes = b"") -> bytes:
    """Send `data`, read the answer until the server closes (or 30 s), then send `then`."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and _complete(answer):
                break
        if then:
            sock.sendall(then)
        return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def parse_answer(answer: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


# ---- 1. counts and sizes refused while decoding ------------------------------------------


def test_element_count_is_checked_before_any_value_is_converted(server: RunningServer) -> None:
    # The values end with one that is not a number: converting them first would report that;
    # counting first reports the count, without converting 30,000 values.
    values: list[Any] = [1] * 29_999 + ["x"]
    document = {"inputs": [simple_input("INPUT0", values), simple_input("INPUT1", [1] * 16)]}
    status, _, body = request(server.http_port, "POST", INFER, json.dumps(document))
    error = error_of(status, body)
    assert error == "input 'INPUT0' has 30000 elements in 'data', but shape [1, 16] needs 16"


def test_nested_data_is_counted_too(server: RunningServer) -> None:
    document = {
        "inputs": [
            simple_input("INPUT0", [[1] * 16] * 3),
            simple_input("INPUT1", [[1] * 8, [1] * 8]),  # the right count, nested otherwise
        ]
    }
    status, _, body = request(server.http_port, "POST", INFER, json.dumps(document))
    assert "has 48 elements in 'data', but shape [1, 16] needs 16" in error_of(status, body)
    document["inputs"][0] = simple_input("INPUT0", [1] * 16)
    status, _, body = request(server.http_port, "POST", INFER, json.dumps(document))
    assert status == 200, body


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_inflating_past_the_limit_is_refused_before_the_rest_arrives(
    server: RunningServer, encoding: str
) -> None:
    inflated = b" " * (50 * LIMIT)
    compressed = gzip.compress(inflated) if encoding == "gzip" else zlib.compress(inflated)
    first = compressed[: len(compressed) // 2]  # inflates past the limit on its own
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: {encoding}\r\nContent-Length: {len(compressed)}\r\n\r\n"
    ).encode()
    # The server answers with half the body sent: it never waits for the rest.
    status, _, body = parse_answer(raw_exchange(server.http_port, head + first))
    assert status == 413
    assert error_of(status, body) == (
        f"inflated request body is larger than the {LIMIT}-byte limit (--http-max-body-bytes)"
    )


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_within_the_limit_work(server: RunningServer, encoding: str) -> None:
    document = {"inputs": [simple_input(name, list(range(16))) for name in ("INPUT0", "INPUT1")]}
    plain = json.dumps(document).encode()
    compressed = gzip.compress(plain) if encoding == "gzip" else zlib.compress(plain)
    headers = {"Content-Encoding": encoding}
    status, _, body = request(server.http_port, "POST", INFER, compressed, headers)
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["data"] == [2 * i for i in range(16)]
    status, _, body = request(server.http_port, "POST", INFER, compressed[:-8], headers)
    assert error_of(status, body) == f"body is not valid {encoding}: the stream is truncated"


# ---- 2. empty path segments ---------------------------------------------------------------

EMPTY_SEGMENTS = [
    ("GET", "/v2/models//ready"),
    ("GET", "/v2/models/simple/versions//ready"),
    ("GET", "/v2/models//versions/1/ready"),
    ("GET", "/v2/models//versions/1"),
    ("GET", "/v2/models/simple/versions/"),
    ("GET", "/v2/models/simple/versions//"),
    ("GET", "/v2/models//config"),
    ("GET", "/v2/models/simple/versions//config"),
    ("POST", "/v2/models//infer"),
    ("POST", "/v2/models/simple/versions//infer"),
    ("POST", "/v2/models/simple/versions//generate"),
    ("POST", "/v2/models/simple/versions//generate_stream"),
    ("GET", "/v2/models//stats"),
    ("GET", "/v2/models//versions/x/stats"),
    ("GET", "/v2/models/simple/versions//stats"),
    ("POST", "/v2/repository/models//load"),
    ("POST", "/v2/repository/models//unload"),
    ("GET", "/v2/systemsharedmemory/region//status"),
    ("POST", "/v2/systemsharedmemory/region//unregister"),
    ("GET", "/v2/cudasharedmemory/region//status"),
    ("POST", "/v2/cudasharedmemory/region//unregister"),
    ("GET", "/v2//health/ready"),
    ("GET", "/v1//models"),
]


@pytest.mark.parametrize(("method", "path"), EMPTY_SEGMENTS)
def test_empty_path_segments_are_refused(server: RunningServer, method: str, path: str) -> None:
    body = json.dumps({"inputs": [simple_input("INPUT0", [1] * 16)]}) if method == "POST" else None
    status, headers, answer = request(server.http_port, method, path, body)
    assert status in (400, 404), (status, answer)
    assert headers["content-type"] == "application/json"
    assert error_of(status, answer)


# ---- 3. ambiguous inputs ------------------------------------------------------------------


def test_binary_data_size_and_data_together_are_refused(server: RunningServer) -> None:
    binary = bytes(64)
    both = simple_input("INPUT0", [1] * 16, parameters={"binary_data_size": 64})
    header = json.dumps({"inputs": [both, simple_input("INPUT1", [1] * 16)]}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))}
    status, _, body = request(server.http_port, "POST", INFER, header + binary, headers)
    assert error_of(status, body) == (
        "input 'INPUT0' must set only one of 'data', 'binary_data_size' and 'shared_memory_region'"
    )


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (
            {"parameters": {"binary_data_output": "yes"}},
            "parameter 'binary_data_output' of the request must be a boolean",
        ),
        (
            {"outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": 1}}]},
            "parameter 'binary_data' of output 'OUTPUT0' must be a boolean",
        ),
    ],
)
def test_a_binary_data_flag_that_is_not_a_boolean_is_refused(
    server: RunningServer, document: dict[str, Any], error: str
) -> None:
    inputs = [simple_input("INPUT0", [1] * 16), simple_input("INPUT1", [1] * 16)]
    body = json.dumps({"inputs": inputs, **document}).encode()
    status, _, answer = request(server.http_port, "POST", INFER, body)
    assert error_of(status, answer) == error
    body = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": False}}).encode()
    assert request(server.http_port, "POST", INFER, body)[0] == 200


# ---- 4. gRPC statistics of a version without a model ---------------------------------------


def test_grpc_statistics_of_a_version_without_a_model_is_invalid(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelStatistics(pb.ModelStatisticsRequest(name="", version="1"), timeout=30)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == "statistics of version '1' need a model name"
        every = stub.ModelStatistics(pb.ModelStatisticsRequest(), timeout=30)
        assert [stats.name for stats in every.model_stats] == ["simple"]


# ---- 5. malformed framing -----------------------------------------------------------------

MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET /v2 HTTP/9.9\r\n\r\n",
    b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
    b"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n",
    b"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /v2/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_framing_gets_the_json_error(server: RunningServer, data: bytes) -> None:
    status, headers, body = parse_answer(raw_exchange(server.http_port, data))
    assert status == 400
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"connection"] == b"close"
    assert error_of(status, body) == "malformed HTTP request"
    assert request(server.http_port, "GET", "/v2/health/ready")[0] == 200


def test_oversized_headers_get_431_naming_the_limit(model_repository: Path) -> None:
    with running_server(model_repository, "--http-max-header-bytes", "1000") as small:
        data = b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 1000 + b"\r\n\r\n"
        status, _, body = parse_answer(raw_exchange(small.http_port, data))
        assert status == 431
        assert error_of(status, body) == (
            "request line and headers are larger than the 1000-byte limit (--http-max-header-bytes)"
        )
        long_url = b"GET /v2/" + b"a" * 2000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        assert parse_answer(raw_exchange(small.http_port, long_url))[0] == 431
        assert request(small.http_port, "GET", "/v2", headers={"X-Small": "a" * 500})[0] == 200


# ---- 6. Host headers (DNS rebinding) ------------------------------------------------------


def host_status(port: int, host: str) -> tuple[int, bytes]:
    data = f"GET /v2/health/ready HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    status, _, body = parse_answer(raw_exchange(port, data))
    return status, body


SERVED_HOSTS = [
    "localhost", "localhost:8000", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:9",
    "[::1]", "[::1]:8000", "10.1.2.3:8000", "[fe80::1]:80",
]  # fmt: skip
FOREIGN_HOSTS = ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io"]


@pytest.mark.parametrize("host", SERVED_HOSTS)
def test_loopback_names_and_addresses_are_served(server: RunningServer, host: str) -> None:
    assert host_status(server.http_port, host)[0] == 200


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_foreign_hosts_get_421(server: RunningServer, host: str) -> None:
    status, body = host_status(server.http_port, host)
    assert status == 421
    assert error_of(status, body) == f"Host '{host}' is not served here (--allowed-hosts)"
    metrics_port = server.ports["metrics"]
    status, body = host_status(metrics_port, host)
    assert status == 421
    assert "--allowed-hosts" in error_of(status, body)
    assert host_status(metrics_port, "localhost")[0] == 200


def test_allowed_hosts_flag_adds_names_and_star_serves_all(model_repository: Path) -> None:
    flag = ("--allowed-hosts", "inferd.example,models.internal")
    with running_server(model_repository, *flag) as named:
        assert host_status(named.http_port, "inferd.example:8000")[0] == 200
        assert host_status(named.http_port, "models.internal")[0] == 200
        assert host_status(named.http_port, "localhost")[0] == 200
        assert host_status(named.http_port, "evil.example")[0] == 421
    with running_server(model_repository, "--allowed-hosts", "*") as every:
        assert host_status(every.http_port, "evil.example")[0] == 200


def test_a_server_beyond_loopback_says_which_names_it_answers(model_repository: Path) -> None:
    with running_server(model_repository, "--host", "0.0.0.0", "--grpc-port", "0") as exposed:
        assert host_status(exposed.http_port, "10.1.2.3")[0] == 200
        assert host_status(exposed.http_port, "inferd.example")[0] == 421
    assert (
        "HTTP and metrics answer requests whose Host is localhost, an IP address or 0.0.0.0; "
        "a DNS name clients use needs --allowed-hosts (others get 421)"
    ) in exposed.log_text()
