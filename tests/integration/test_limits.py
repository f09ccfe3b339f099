"""Every limit of docs/limits.md's server table, passed against a real server with small limits:
each refusal is a 4xx (or its gRPC status) whose message names the limit and its flag. The
table and these cases are compared, so a limit cannot be added to one and not the other."""

from __future__ import annotations

import gzip
import json
import re
import socket
from collections.abc import Callable, Iterator
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tests.integration.http_helpers import request
from tests.integration.server import RunningServer, running_server

LIMITS_PAGE = Path(__file__).parents[2] / "docs" / "limits.md"
BODY = 2_000_000
HEADER = 4000
MESSAGE = 2_000_000
REGIONS = 2
REGION_BYTES = 4096
INFER = "/v2/models/simple/infer"


@pytest.fixture(scope="module")
def server(model_repository: Path) -> Iterator[RunningServer]:
    with running_server(
        model_repository,
        "--http-max-body-bytes", str(BODY),
        "--http-max-header-bytes", str(HEADER),
        "--grpc-max-message-bytes", str(MESSAGE),
        "--enable-shared-memory",
        "--shared-memory-max-regions", str(REGIONS),
        "--shared-memory-max-bytes", str(REGION_BYTES),
    ) as running:  # fmt: skip
        yield running


def refusal(status: int, body: bytes) -> tuple[int, str]:
    assert 400 <= status < 500, (status, body)
    return status, json.loads(body)["error"]


def post(server: RunningServer, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return refusal(*request(server.http_port, "POST", INFER, body, headers)[::2])


def grpc_refusal(server: RunningServer, message: pb.ModelInferRequest) -> tuple[Any, str]:
    with grpc.insecure_channel(
        server.grpc_url, options=[("grpc.max_send_message_length", 4 * MESSAGE)]
    ) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(message, timeout=30)
    return refused.value.code(), refused.value.details()


def infer_document(*inputs: dict[str, Any]) -> bytes:
    return json.dumps({"inputs": list(inputs)}).encode()


def int32(name: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": "INT32", "shape": shape, "data": data}


def body_as_sent(server: RunningServer) -> None:
    status, error = post(server, b" " * (BODY + 1))
    assert status == 413
    assert error == f"request body is larger than the {BODY}-byte limit (--http-max-body-bytes)"


def body_inflated(server: RunningServer) -> None:
    status, error = post(server, gzip.compress(b" " * (BODY + 1)), {"Content-Encoding": "gzip"})
    assert status == 413
    assert error == (
        f"inflated request body is larger than the {BODY}-byte limit (--http-max-body-bytes)"
    )


def header_bytes(server: RunningServer) -> None:
    head = b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * HEADER + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    status, error = refusal(int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2])
    assert status == 431
    assert error == (
        f"request line and headers are larger than the {HEADER}-byte limit "
        "(--http-max-header-bytes)"
    )


def grpc_message(server: RunningServer) -> None:
    message = pb.ModelInferRequest(model_name="simple", raw_input_contents=[bytes(MESSAGE)])
    code, details = grpc_refusal(server, message)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert re.search(rf"larger than max \(\d+ vs\. {MESSAGE}\)", details), details


def grpc_metadata(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ServerLive(pb.ServerLiveRequest(), metadata=[("x-pad", "a" * 17_000)], timeout=30)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "received metadata size exceeds hard limit" in refused.value.details()


def json_nesting(server: RunningServer) -> None:
    status, error = post(server, b"[" * 1025 + b"]" * 1025)
    assert status == 400
    assert error == "JSON in request is nested deeper than 1024 levels"


def tensors_per_request(server: RunningServer) -> None:
    inputs = [int32(f"i{index}", [1], [1]) for index in range(16_385)]
    status, error = post(server, infer_document(*inputs))
    assert (status, error) == (400, "the request has 16385 inputs; at most 16384")
    message = pb.ModelInferRequest(model_name="simple")
    for index in range(16_385):
        message.outputs.add(name=f"o{index}")
    code, details = grpc_refusal(server, message)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details == "the request has 16385 outputs; at most 16384"


def dimensions_per_tensor(server: RunningServer) -> None:
    status, error = post(server, infer_document(int32("INPUT0", [1] * 33, [1])))
    assert (status, error) == (400, "input 'INPUT0' has 33 dimensions; at most 32")


def elements_per_tensor(server: RunningServer) -> None:
    status, error = post(server, infer_document(int32("INPUT0", [1, 16], [1] * 17)))
    assert status == 400
    assert error == "input 'INPUT0' has 17 elements in 'data', but shape [1, 16] needs 16"


def register(server: RunningServer, region: str, key: str, byte_size: int) -> tuple[int, bytes]:
    path = f"/v2/systemsharedmemory/region/{region}/register"
    document = json.dumps({"key": key, "offset": 0, "byte_size": byte_size})
    status, _, body = request(server.http_port, "POST", path, document)
    return status, body


def shared_memory_regions(server: RunningServer) -> None:
    block = shared_memory.SharedMemory(create=True, size=64)
    try:
        for index in range(REGIONS):
            assert register(server, f"r{index}", block.name, 64)[0] == 200
        status, error = refusal(*register(server, "one_more", block.name, 64))
        assert status == 400
        assert error == (
            f"{REGIONS} shared memory regions are registered, the limit "
            "(--shared-memory-max-regions); unregister one first"
        )
    finally:
        request(server.http_port, "POST", "/v2/systemsharedmemory/unregister")
        block.close()
        block.unlink()


def shared_memory_bytes(server: RunningServer) -> None:
    block = shared_memory.SharedMemory(create=True, size=REGION_BYTES + 1)
    try:
        status, error = refusal(*register(server, "big", block.name, REGION_BYTES + 1))
        assert status == 413
        assert error == (
            f"registering {REGION_BYTES + 1} bytes would take the shared memory regions past "
            f"the {REGION_BYTES}-byte limit (--shared-memory-max-bytes)"
        )
        assert register(server, "fits", block.name, REGION_BYTES)[0] == 200
    finally:
        request(server.http_port, "POST", "/v2/systemsharedmemory/unregister")
        block.close()
        block.unlink()


CASES: dict[str, Callable[[RunningServer], None]] = {
    "HTTP request body, as sent": body_as_sent,
    "HTTP request body, inflated": body_inflated,
    "HTTP request line and headers, together": header_bytes,
    "gRPC message, received or sent": grpc_message,
    "gRPC metadata (request headers), together": grpc_metadata,
    "JSON nesting (HTTP bodies)": json_nesting,
    "Tensors per request": tensors_per_request,
    "Dimensions per tensor": dimensions_per_tensor,
    "Elements per tensor": elements_per_tensor,
    "Shared-memory regions registered at once": shared_memory_regions,
    "Shared-memory bytes, all registered regions together": shared_memory_bytes,
}


def documented_limits() -> list[str]:
    """The first column of the table under "## Server limits", without a note in parentheses
    that starts with code ("inflated (`Content-Encoding: gzip` ...)")."""
    section = LIMITS_PAGE.read_text().split("## Server limits", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    names = [row.split("|")[1].strip() for row in rows]
    return [re.sub(r" \(`.*$", "", name) for name in names]


def test_every_documented_limit_has_a_case() -> None:
    assert documented_limits() == list(CASES)


@pytest.mark.parametrize("limit", list(CASES))
def test_limit_is_enforced_with_a_message_naming_it(server: RunningServer, limit: str) -> None:
    CASES[limit](server)
    assert request(server.http_port, "GET", "/v2/health/ready")[0] == 200
