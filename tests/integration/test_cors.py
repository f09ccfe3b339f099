"""CORS: no Access-Control-* header at all unless --cors-allow-origin is given; with it, preflights
and requests from the listed origins only (or any, for '*') get them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.http_helpers import request
from tests.integration.server import RunningServer, running_server

ALLOWED = "https://app.example"
ALSO_ALLOWED = "http://localhost:3000"
OTHER = "https://evil.example"
INFER = "/v2/models/simple/infer"
_BODY = json.dumps(
    {
        "inputs": [
            {"name": name, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
            for name in ("INPUT0", "INPUT1")
        ]
    }
)


@pytest.fixture(scope="module")
def cors_server(model_repository: Path) -> Iterator[RunningServer]:
    flags = ["--cors-allow-origin", ALLOWED, "--cors-allow-origin", f"{ALSO_ALLOWED}/,other://x"]
    with running_server(model_repository, *flags, "--management-token", "s3cret") as running:
        yield running


def _preflight(port: int, origin: str, method: str = "POST") -> tuple[int, dict[str, str]]:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type, authorization",
    }
    status, answer, _ = request(port, "OPTIONS", INFER, headers=headers)
    return status, answer


def _cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.startswith("access-control-")}


def test_no_cors_headers_without_the_flag(server: RunningServer) -> None:
    status, headers = _preflight(server.http_port, ALLOWED)
    assert status >= 400
    assert _cors_headers(headers) == {}
    status, headers, _ = request(server.http_port, "POST", INFER, _BODY, {"Origin": ALLOWED})
    assert status == 200
    assert _cors_headers(headers) == {}


@pytest.mark.parametrize("origin", [ALLOWED, ALSO_ALLOWED])
def test_a_listed_origins_preflight_is_allowed(cors_server: RunningServer, origin: str) -> None:
    status, headers = _preflight(cors_server.http_port, origin)
    assert status == 204
    assert headers["access-control-allow-origin"] == origin
    assert "POST" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == "content-type, authorization"
    assert "access-control-allow-credentials" not in headers
    assert "origin" in headers["vary"].lower()


def test_a_listed_origins_request_gets_the_header(cors_server: RunningServer) -> None:
    status, headers, body = request(
        cors_server.http_port, "POST", INFER, _BODY, {"Origin": ALLOWED}
    )
    assert status == 200
    assert json.loads(body)["outputs"][0]["data"] == [2 * i for i in range(16)]
    assert headers["access-control-allow-origin"] == ALLOWED
    assert headers["access-control-expose-headers"] == "inference-header-content-length"
    # An error answer carries it too, so the page can read why.
    status, headers, _ = request(cors_server.http_port, "GET", "/v2/models/nope", None,
                                 {"Origin": ALLOWED})  # fmt: skip
    assert status == 404
    assert headers["access-control-allow-origin"] == ALLOWED


def test_another_origin_gets_no_cors_headers(cors_server: RunningServer) -> None:
    status, headers = _preflight(cors_server.http_port, OTHER)
    assert status == 403
    assert _cors_headers(headers) == {}
    status, headers, _ = request(cors_server.http_port, "POST", INFER, _BODY, {"Origin": OTHER})
    assert status == 200
    assert _cors_headers(headers) == {}
    assert headers["vary"] == "Origin"


def test_a_preflight_needs_no_key_but_the_request_does(cors_server: RunningServer) -> None:
    headers = {"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}
    status, answer, _ = request(cors_server.http_port, "OPTIONS", "/v2/repository/index",
                                headers=headers)  # fmt: skip
    assert (status, answer["access-control-allow-origin"]) == (204, ALLOWED)
    status, answer, _ = request(cors_server.http_port, "POST", "/v2/repository/index", None,
                                {"Origin": ALLOWED})  # fmt: skip
    assert status == 403
    assert answer["access-control-allow-origin"] == ALLOWED


def test_any_origin_with_a_star(model_repository: Path) -> None:
    with running_server(model_repository, "--cors-allow-origin", "*") as server:
        status, headers = _preflight(server.http_port, OTHER)
        assert (status, headers["access-control-allow-origin"]) == (204, "*")
        status, headers, _ = request(server.http_port, "GET", "/v2", None, {"Origin": OTHER})
        assert (status, headers["access-control-allow-origin"]) == (200, "*")
        # No Origin header: not a cross-origin request, nothing added.
        status, headers, _ = request(server.http_port, "GET", "/v2")
        assert _cors_headers(headers) == {}


def test_a_value_that_is_not_an_origin_stops_the_server(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "inferd", "serve", "--model-repository", str(tmp_path),
               "--cors-allow-origin", "https://app.example/path"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--cors-allow-origin 'https://app.example/path' is not an origin" in done.stderr


def test_a_foreign_host_gets_421_before_any_preflight(cors_server: RunningServer) -> None:
    headers = {
        "Host": "rebound.example",
        "Origin": ALLOWED,
        "Access-Control-Request-Method": "POST",
    }
    status, answer, _ = request(cors_server.http_port, "OPTIONS", INFER, headers=headers)
    assert status == 421
    assert _cors_headers(answer) == {}
