"""The express lane (frontends/http/express.py) for infer requests, over raw sockets and
tritonclient to a real server: each request it takes is answered byte for byte as the ASGI path
answers the same request sent with a chunked body (which the lane leaves to it), on keep-alive,
pipelined, HTTP/1.0 and `Connection: close` connections, with its body split across packets,
with its client gone mid-request, and behind malformed or foreign requests."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime

import numpy as np
import pytest
import tritonclient.http as httpclient

from inferd.frontends.http.protocol import MAX_ROUTES
from tests.integration.server import RunningServer

KEEP_ALIVE_S = 5  # uvicorn's default, which the server keeps
A = list(range(16))
B = [3] * 16
BINARY_HEADER = json.dumps(
    {
        "inputs": [
            {
                "name": name,
                "shape": [1, 16],
                "datatype": "INT32",
                "parameters": {"binary_data_size": 64},
            }
            for name in ("INPUT0", "INPUT1")
        ],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
    }
).encode()


def json_body(a: list[int], b: list[int] = B, request_id: str = "") -> bytes:
    inputs = [
        {"name": name, "shape": [1, 16], "datatype": "INT32", "data": data}
        for name, data in (("INPUT0", a), ("INPUT1", b))
    ]
    return json.dumps({"id": request_id, "inputs": inputs}).encode()


def binary_body(a: list[int]) -> bytes:
    return BINARY_HEADER + struct.pack("<16i", *a) + struct.pack("<16i", *B)


def infer_request(
    body: bytes,
    path: str = "/v2/models/simple/infer",
    headers: str = "",
    version: str = "1.1",
    chunked: bool = False,
) -> bytes:
    """An infer request; `chunked` sends the same body with chunked framing (the ASGI path)."""
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {len(body)}\r\n"
    host = "" if "Host:" in headers else "Host: 127.0.0.1\r\n"
    head = f"POST {path} HTTP/{version}\r\n{host}{headers}{framing}\r\n".encode()
    if chunked:
        return head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    return head + body


class Answers:
    """The answers on one connection, read in the order they come."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def next(self) -> tuple[bytes, dict[bytes, bytes], bytes]:
        """Status line, headers (lower-case names) and body of the next answer."""
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if status.startswith(b"HTTP/1.1 100 "):  # an interim answer
            return status, headers, b""
        length = int(headers[b"content-length"])
        while len(self._buffer) < length:
            self._fill()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return status, headers, body

    def closed(self) -> bool:
        """Whether the server closed the connection, and did so itself: uvicorn's keep-alive
        timeout (5 s) would close an idle connection it forgot to close, after this wait."""
        self._sock.settimeout(KEEP_ALIVE_S - 1)
        return not self._buffer and self._sock.recv(1) == b""

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        assert chunk, f"connection closed with {self._buffer!r} unanswered"
        self._buffer += chunk


@pytest.fixture
def connect(server: RunningServer) -> Iterator[Callable[[], socket.socket]]:
    opened: list[socket.socket] = []

    def open_connection() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opened.append(sock)
        return sock

    yield open_connection
    for sock in opened:
        sock.close()


def exchange(server: RunningServer, data: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(data)
        return Answers(sock).next()


def sums(body: bytes) -> list[int]:
    outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
    data: list[int] = outputs["OUTPUT0"]["data"]
    return data


INFER = "/v2/models/simple/infer"
CASES: dict[str, tuple[bytes, str, str]] = {  # body, headers, path
    "json": (json_body(A), "", INFER),
    "json with id": (json_body(A, request_id="x-1"), "", INFER),
    "binary": (binary_body(A), f"Inference-Header-Content-Length: {len(BINARY_HEADER)}\r\n", INFER),
    "versioned": (json_body(A), "", "/v2/models/simple/versions/1/infer"),
    "query string": (json_body(A), "", "/v2/models/simple/infer?x=1"),
    "unknown model": (json_body(A), "", "/v2/models/nothing/infer"),
    "unknown version": (json_body(A), "", "/v2/models/simple/versions/9/infer"),
    "encoded name": (json_body(A), "", "/v2/models/sim%70le/infer"),
    "bad json": (b"{not json", "", INFER),
    "wrong shape": (json_body(A[:8], B[:8]), "", INFER),
    "raw body to two inputs": (b"\0" * 64, "Inference-Header-Content-Length: 0\r\n", INFER),
    "bad header length": (binary_body(A), "Inference-Header-Content-Length: x\r\n", INFER),
    "header length past body": (
        binary_body(A),
        "Inference-Header-Content-Length: 99999\r\n",
        INFER,
    ),
    "traced parent": (
        json_body(A),
        "traceparent: 00-" + "a" * 32 + "-" + "b" * 16 + "-01\r\n",
        INFER,
    ),
    "foreign host": (json_body(A), "Host: evil.example\r\n", INFER),
}


@pytest.mark.parametrize("case", list(CASES))
def test_answers_are_the_asgi_paths(server: RunningServer, case: str) -> None:
    body, headers, target = CASES[case]
    express = exchange(server, infer_request(body, target, headers))
    asgi = exchange(server, infer_request(body, target, headers, chunked=True))
    assert express[0] == asgi[0]
    assert {k: v for k, v in express[1].items() if k != b"date"} == {
        k: v for k, v in asgi[1].items() if k != b"date"
    }
    assert b"date" in express[1]
    assert express[2] == asgi[2]
    if case == "foreign host":
        assert express[0].startswith(b"HTTP/1.1 421")
    if case in ("json", "versioned", "encoded name", "query string", "traced parent"):
        assert express[0] == b"HTTP/1.1 200 OK"
        assert sums(express[2]) == [a + b for a, b in zip(A, B, strict=True)]


def test_keep_alive_serves_request_after_request(connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    answers = Answers(sock)
    for i in range(5):
        sock.sendall(infer_request(json_body([i] * 16)))
        status, headers, body = answers.next()
        assert status == b"HTTP/1.1 200 OK" and b"connection" not in headers
        assert sums(body) == [i + 3] * 16


def test_keep_alive_timeout_counts_from_the_last_answer(
    connect: Callable[[], socket.socket],
) -> None:
    """The keep-alive timer is set once per idle period (protocol.py): requests (express and
    ASGI) that come within the timeout of the previous answer, though past the timeout since
    the first, find the connection open."""
    sock = connect()
    answers = Answers(sock)
    ready = b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for i in range(4):
        sock.sendall(infer_request(json_body([i] * 16)) if i % 2 == 0 else ready)
        status, _, _ = answers.next()
        assert status == b"HTTP/1.1 200 OK"
        time.sleep(KEEP_ALIVE_S * 0.5)


def test_keep_alive_timeout_waits_for_a_request_on_its_way(
    connect: Callable[[], socket.socket],
) -> None:
    """A request whose first bytes came before the timeout is answered whenever the rest
    comes, as uvicorn's timer (stopped by any bytes) does; then the idle connection is closed
    once the timeout has passed since that answer."""
    sock = connect()
    answers = Answers(sock)
    sock.sendall(infer_request(json_body(A)))
    assert answers.next()[0] == b"HTTP/1.1 200 OK"
    data = infer_request(json_body(A))
    time.sleep(KEEP_ALIVE_S * 0.5)
    sock.sendall(data[:30])
    time.sleep(KEEP_ALIVE_S * 0.8)  # past the timeout since the first answer
    sock.sendall(data[30:])
    status, headers, body = answers.next()
    assert status == b"HTTP/1.1 200 OK" and b"connection" not in headers
    assert sums(body)[0] == 3
    sock.settimeout(KEEP_ALIVE_S * 3)
    assert sock.recv(1) == b""


def test_each_target_routes_as_its_own_past_the_kept_routes(
    connect: Callable[[], socket.socket],
) -> None:
    """The routes of request targets seen before are kept (protocol.py), at most MAX_ROUTES:
    targets that differ only in their query, in their model or in their action each route as
    their own, before and after more distinct targets than that were seen."""
    sock = connect()
    answers = Answers(sock)
    first = "/v2/models/simple/infer?n=0"
    targets = [f"/v2/models/simple/infer?n={i}" for i in range(MAX_ROUTES + 2)]
    for target in [first, "/v2/models/nothing/infer?n=0", *targets, first, targets[-1]]:
        sock.sendall(infer_request(json_body([1] * 16), target))
        status, _, body = answers.next()
        if "nothing" in target:
            assert status.startswith(b"HTTP/1.1 404")
        else:
            assert status == b"HTTP/1.1 200 OK" and sums(body) == [4] * 16
    # A known target of another route (the model's metadata, not infer) takes the ASGI way.
    sock.sendall(b"GET /v2/models/simple HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status, _, body = answers.next()
    assert status == b"HTTP/1.1 200 OK" and json.loads(body)["name"] == "simple"


def test_pipelined_requests_are_answered_in_order(connect: Callable[[], socket.socket]) -> None:
    """Express and ASGI requests sent in one write: each answered in its turn."""
    sock = connect()
    requests = [
        infer_request(json_body([1] * 16)),
        infer_request(json_body([2] * 16)),
        b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        infer_request(json_body([4] * 16), chunked=True),
        infer_request(json_body([5] * 16)),
        infer_request(b"{bad"),
        infer_request(json_body([7] * 16)),
    ]
    sock.sendall(b"".join(requests))
    answers = Answers(sock)
    for value in (1, 2, None, 4, 5, "bad", 7):
        status, _, body = answers.next()
        if value is None:
            assert status == b"HTTP/1.1 200 OK" and body == b""
        elif value == "bad":
            assert status.startswith(b"HTTP/1.1 400")
        else:
            assert sums(body) == [value + 3] * 16


MALFORMED_BEHIND = {
    "request line": b"GARBAGE\r\n\r\n",
    # A request whose chunked body does not parse: its headers are in, it is queued, and it
    # must not wait for the rest of its body once the others are answered.
    "body": b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b'Transfer-Encoding: chunked\r\n\r\n4\r\n{"in\r\nzz\r\n',
}


@pytest.mark.parametrize("malformed", list(MALFORMED_BEHIND))
@pytest.mark.parametrize("chunked", [False, True], ids=["express", "asgi"])
def test_requests_before_a_malformed_one_are_answered_first(
    connect: Callable[[], socket.socket], chunked: bool, malformed: str
) -> None:
    """Bytes that do not parse, pipelined behind requests: those are answered in order, then
    the 400, and the connection closed (the 400 written at once would stand in the place of
    the first answer, and the others be lost)."""
    sock = connect()
    sock.sendall(
        infer_request(json_body([1] * 16), chunked=chunked)
        + infer_request(json_body([2] * 16))
        + MALFORMED_BEHIND[malformed]
    )
    answers = Answers(sock)
    for value in (1, 2):
        status, _, body = answers.next()
        assert status == b"HTTP/1.1 200 OK" and sums(body) == [value + 3] * 16
    status, headers, body = answers.next()
    assert status.startswith(b"HTTP/1.1 400") and headers[b"connection"] == b"close"
    assert json.loads(body) == {"error": "malformed HTTP request"}
    assert answers.closed()


def test_answers_held_in_groups_reach_their_own_connections(
    connect: Callable[[], socket.socket],
) -> None:
    """Requests in flight together on several connections, their answers written in groups
    (http/answer_groups.py): each connection gets its own, round after round; one whose
    request has bytes that do not parse pipelined behind it gets its answer first, then
    the 400."""
    socks = [connect() for _ in range(6)]
    answers = [Answers(sock) for sock in socks]
    for round_ in range(12):
        for index, sock in enumerate(socks):
            sock.sendall(infer_request(json_body([round_ * 10 + index] * 16)))
        for index, connection in enumerate(answers):
            status, _, body = connection.next()
            assert status == b"HTTP/1.1 200 OK"
            assert sums(body) == [round_ * 10 + index + 3] * 16
    for index, sock in enumerate(socks):
        sock.sendall(infer_request(json_body([index] * 16)) + (b"GARBAGE\r\n\r\n" * (index == 0)))
    for index, connection in enumerate(answers):
        status, _, body = connection.next()
        assert status == b"HTTP/1.1 200 OK" and sums(body) == [index + 3] * 16
    status, _, _ = answers[0].next()
    assert status.startswith(b"HTTP/1.1 400") and answers[0].closed()


@pytest.mark.parametrize(
    ("version", "headers"),
    [("1.0", ""), ("1.0", "Connection: keep-alive\r\n"), ("1.1", "Connection: close\r\n")],
)
def test_a_connection_to_close_is_closed_after_its_answer(
    connect: Callable[[], socket.socket], version: str, headers: str
) -> None:
    sock = connect()
    sock.sendall(infer_request(json_body(A), headers=headers, version=version))
    answers = Answers(sock)
    status, answer_headers, body = answers.next()
    assert status == b"HTTP/1.1 200 OK" and answer_headers[b"connection"] == b"close"
    assert sums(body)[0] == 3
    assert answers.closed()


def test_answer_heads_are_kept_per_kind_of_answer(connect: Callable[[], socket.socket]) -> None:
    """Answers of each kind (status, content type, extra headers, keep-alive) in turn, within
    about a second (one set of uvicorn's default headers): each with its own head, as kept by
    the express lane (express.py)."""
    keeping, closing = connect(), connect()
    answers = Answers(keeping)
    binary_headers = f"Inference-Header-Content-Length: {len(BINARY_HEADER)}\r\n"
    for _ in range(2):
        keeping.sendall(infer_request(json_body(A)))
        status, headers, _ = answers.next()
        assert status == b"HTTP/1.1 200 OK" and b"connection" not in headers
        assert headers[b"content-type"] == b"application/json"
        keeping.sendall(infer_request(binary_body(A), headers=binary_headers))
        status, headers, body = answers.next()
        assert headers[b"content-type"] == b"application/octet-stream"
        assert int(headers[b"inference-header-content-length"]) < len(body)
        keeping.sendall(infer_request(json_body(A), "/v2/models/nothing/infer"))
        status, headers, _ = answers.next()
        assert (
            status.startswith(b"HTTP/1.1 404") and b"inference-header-content-length" not in headers
        )
    closing.sendall(infer_request(json_body(A), version="1.0"))
    status, headers, _ = Answers(closing).next()
    assert status == b"HTTP/1.1 200 OK" and headers[b"connection"] == b"close"
    keeping.sendall(infer_request(json_body(A)))
    assert b"connection" not in answers.next()[1]


def test_answers_carry_the_current_date(connect: Callable[[], socket.socket]) -> None:
    """The express lane's kept answer heads follow uvicorn's `date` header, which changes each
    second."""
    sock = connect()
    answers = Answers(sock)
    dates = []
    for _ in range(2):
        sock.sendall(infer_request(json_body(A)))
        status, headers, _ = answers.next()
        assert status == b"HTTP/1.1 200 OK"
        dates.append(parsedate_to_datetime(headers[b"date"].decode()))
        time.sleep(2.5)
    assert dates[1] > dates[0]


def test_a_body_split_across_packets_is_read_whole(connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    data = infer_request(
        binary_body(A), headers=f"Inference-Header-Content-Length: {len(BINARY_HEADER)}\r\n"
    )
    head_end = data.index(b"\r\n\r\n") + 4
    for piece in (
        data[:20],
        data[20:head_end],
        data[head_end : head_end + 7],
        data[head_end + 7 :],
    ):
        sock.sendall(piece)
        time.sleep(0.05)
    status, headers, body = Answers(sock).next()
    assert status == b"HTTP/1.1 200 OK"
    length = int(headers[b"inference-header-content-length"])
    assert list(np.frombuffer(body[length:], np.int32)) == [a + 3 for a in A]


def test_a_client_gone_mid_body_leaves_the_server_serving(
    server: RunningServer, connect: Callable[[], socket.socket]
) -> None:
    data = infer_request(json_body(A))
    sock = connect()
    sock.sendall(data[: len(data) - 10])
    sock.close()
    status, _, body = exchange(server, data)
    assert status == b"HTTP/1.1 200 OK" and sums(body)[0] == 3


@pytest.mark.parametrize(
    "data",
    [
        b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: zz\r\n\r\n",
        b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
        b"POST /v2/models/simple/infer HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
)
def test_malformed_requests_are_refused_with_json(server: RunningServer, data: bytes) -> None:
    status, headers, body = exchange(server, data)
    assert status.startswith(b"HTTP/1.1 400") and headers[b"connection"] == b"close"
    assert set(json.loads(body)) == {"error"}


def test_expect_continue_is_answered(connect: Callable[[], socket.socket]) -> None:
    """`Expect: 100-continue` is the ASGI path's: the interim answer, then the real one."""
    sock = connect()
    body = json_body(A)
    head = infer_request(body, headers="Expect: 100-continue\r\n")[: -len(body)]
    sock.sendall(head)
    answers = Answers(sock)
    time.sleep(0.05)
    sock.sendall(body)
    assert answers.next()[0] == b"HTTP/1.1 100 Continue"
    status, _, body = answers.next()
    assert status == b"HTTP/1.1 200 OK" and sums(body)[0] == 3


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_tritonclient_answers(server: RunningServer, binary: bool, compression: str | None) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    inputs = []
    for name, values in (("INPUT0", A), ("INPUT1", B)):
        tensor = httpclient.InferInput(name, [1, 16], "INT32")
        tensor.set_data_from_numpy(np.array([values], np.int32), binary_data=binary)
        inputs.append(tensor)
    outputs = [
        httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")
    ]
    result = client.infer(
        "simple", inputs, outputs=outputs, request_compression_algorithm=compression
    )
    assert result.as_numpy("OUTPUT0").tolist() == [[a + b for a, b in zip(A, B, strict=True)]]
    assert result.as_numpy("OUTPUT1").tolist() == [[a - b for a, b in zip(A, B, strict=True)]]
