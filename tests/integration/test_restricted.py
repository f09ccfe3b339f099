"""Restricted API groups (Triton's --http-restricted-api and --grpc-restricted-protocol) and
--management-token, through tritonclient's `headers=` over HTTP and gRPC."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from inferd.frontends.restricted import GROUPS, MANAGEMENT_GROUPS
from tests.integration.grpc_helpers import A, B
from tests.integration.http_helpers import request
from tests.integration.infer_helpers import infer_inputs
from tests.integration.server import RunningServer, running_server

HTTP_REFUSAL = "This API is restricted, expecting header"
GRPC_REFUSAL = "This protocol is restricted, expecting header"
TOKEN = "tok-8c1f"


def _value(group: str) -> str:
    return f"secret-of-{group}"


def _simple_inputs(module: Any) -> list[Any]:
    return infer_inputs(module, {"INPUT0": A, "INPUT1": B})


# One call of each group, taking the headers to send.
Call = Callable[[Any, dict[str, str]], Any]
CALLS: dict[str, Call] = {
    "health": lambda c, h: c.is_server_live(headers=h),
    "metadata": lambda c, h: c.get_server_metadata(headers=h),
    "inference": lambda c, h: c.infer("simple", _simple_inputs(_module(c)), headers=h),
    "shared-memory": lambda c, h: c.get_system_shared_memory_status(headers=h),
    "model-config": lambda c, h: c.get_model_config("simple", headers=h),
    "model-repository": lambda c, h: c.get_model_repository_index(headers=h),
    "statistics": lambda c, h: c.get_inference_statistics("simple", headers=h),
    "trace": lambda c, h: c.get_trace_settings(headers=h),
    "logging": lambda c, h: c.get_log_settings(headers=h),
}
# Every group has HTTP routes now that the trace and logging extensions do (issue #19).
HTTP_GROUPS = list(GROUPS)


def _module(client: Any) -> Any:
    return grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient


def _outcome(call: Call, client: Any, headers: dict[str, str]) -> str:
    """ "ok", or the error's message."""
    try:
        call(client, headers)
    except InferenceServerException as exc:
        return str(exc.message())
    return "ok"


def _http_outcome(server: RunningServer, group: str, headers: dict[str, str]) -> str:
    """As `_outcome` over HTTP; tritonclient.http's health calls answer False rather than
    raising, so that group's answer is read off the wire."""
    if group != "health":
        with closing(httpclient.InferenceServerClient(server.http_url)) as client:
            return _outcome(CALLS[group], client, headers)
    status, _, body = request(server.http_port, "GET", "/v2/health/live", headers=headers)
    return "ok" if status == 200 else str(json.loads(body)["error"])


@pytest.fixture(scope="module")
def restricted_server(model_repository: Path) -> Iterator[RunningServer]:
    """Every group restricted, each to its own key and value, on both protocols."""
    flags = []
    for group in GROUPS:
        flags.append(f"--http-restricted-api={group}:key-{group}={_value(group)}")
        flags.append(f"--grpc-restricted-protocol={group}:key-{group}={_value(group)}")
    with running_server(model_repository, *flags) as running:
        yield running


@pytest.mark.parametrize("group", HTTP_GROUPS)
def test_http_group_needs_its_header(restricted_server: RunningServer, group: str) -> None:
    def outcome(headers: dict[str, str]) -> str:
        return _http_outcome(restricted_server, group, headers)

    refusal = f"{HTTP_REFUSAL} 'key-{group}'"
    assert outcome({}) == refusal
    assert outcome({f"key-{group}": "wrong"}) == refusal
    other = "health" if group != "health" else "metadata"
    assert outcome({f"key-{other}": _value(other)}) == refusal
    # With it, the request reaches its handler (shared memory is off: that is its own error).
    answer = outcome({f"Key-{group}": _value(group)})
    assert HTTP_REFUSAL not in answer
    assert answer == "ok" or group == "shared-memory"


@pytest.fixture(scope="module")
def grpc_client(restricted_server: RunningServer) -> Iterator[Any]:
    with closing(grpcclient.InferenceServerClient(restricted_server.grpc_url)) as client:
        yield client


@pytest.mark.parametrize("group", GROUPS)
def test_grpc_group_needs_its_metadata(grpc_client: Any, group: str) -> None:
    client = grpc_client
    call = CALLS[group]
    key = f"triton-grpc-protocol-key-{group}"
    for headers in ({}, {key: "wrong"}, {f"key-{group}": _value(group)}):
        with pytest.raises(InferenceServerException) as caught:
            call(client, headers)
        assert caught.value.status() == "StatusCode.PERMISSION_DENIED"
        assert caught.value.message() == f"{GRPC_REFUSAL} '{key}'"
    answer = _outcome(call, client, {key: _value(group)})
    assert GRPC_REFUSAL not in answer
    # Shared memory is off (the trace and logging extensions answer since issue #19).
    assert answer == "ok" or group == "shared-memory"


def test_http_refusal_is_403_with_a_json_error(restricted_server: RunningServer) -> None:
    for path in ("/v2/health/ready", "/v2/models/simple/ready", "/v2/models/simple", "/v1/models"):
        status, headers, body = request(restricted_server.http_port, "GET", path)
        assert status == 403
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"].startswith(HTTP_REFUSAL)


def test_a_refusal_never_shows_the_expected_value(
    restricted_server: RunningServer, grpc_client: Any
) -> None:
    for group in HTTP_GROUPS:
        assert _value(group) not in _http_outcome(restricted_server, group, {})
    for group in GROUPS:
        assert _value(group) not in _outcome(CALLS[group], grpc_client, {})


def test_a_restricted_stream_is_refused(grpc_client: Any) -> None:
    client = grpc_client
    answers: queue.Queue[Any] = queue.Queue()
    client.start_stream(lambda result, error: answers.put(error or result), headers={"test": "1"})
    try:
        # The server refuses the stream as soon as it opens; the client may see that before it
        # sends (Triton's test expects either), and reports the reason through the callback.
        with suppress(InferenceServerException):
            client.async_stream_infer("simple", _simple_inputs(grpcclient))
        error = answers.get(timeout=30)
    finally:
        client.stop_stream()
    assert isinstance(error, InferenceServerException)
    assert GRPC_REFUSAL in str(error.message())

    key = "triton-grpc-protocol-key-inference"
    client.start_stream(
        lambda result, error: answers.put(error or result), headers={key: _value("inference")}
    )
    try:
        client.async_stream_infer("simple", _simple_inputs(grpcclient))
        result = answers.get(timeout=30)
    finally:
        client.stop_stream()
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), A + B)


def test_the_grpc_health_service_is_in_the_health_group(restricted_server: RunningServer) -> None:
    request = health_pb2.HealthCheckRequest(service="")
    with grpc.insecure_channel(restricted_server.grpc_url) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        metadata = (("triton-grpc-protocol-key-health", _value("health")),)
        answer = stub.Check(request, metadata=metadata, timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def token_server(model_repository: Path) -> Iterator[RunningServer]:
    with running_server(
        model_repository, "--enable-shared-memory", env={"INFERD_MANAGEMENT_TOKEN": TOKEN}
    ) as running:
        yield running


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_management_token_guards_management_only(
    token_server: RunningServer, protocol: str
) -> None:
    if protocol == "http":
        refusal, groups = HTTP_REFUSAL, [g for g in HTTP_GROUPS if g in MANAGEMENT_GROUPS]

        def outcome(group: str, headers: dict[str, str]) -> str:
            return _http_outcome(token_server, group, headers)

    else:
        refusal, groups = GRPC_REFUSAL, list(MANAGEMENT_GROUPS)

        def outcome(group: str, headers: dict[str, str]) -> str:
            with closing(grpcclient.InferenceServerClient(token_server.grpc_url)) as client:
                return _outcome(CALLS[group], client, headers)

    for group in ("health", "metadata", "inference"):
        assert outcome(group, {}) == "ok"
    for group in groups:
        assert outcome(group, {}) == f"{refusal} 'authorization'"
        assert outcome(group, {"authorization": TOKEN}).startswith(refusal)
        answer = outcome(group, {"authorization": f"Bearer {TOKEN}"})
        # Shared memory is on here; trace and log settings answer since issue #19.
        assert answer == "ok"


def test_an_unknown_group_stops_the_server_at_start(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "inferd", "serve", "--model-repository", str(tmp_path),
        "--grpc-restricted-protocol=model-reposit,health:k1=v1",
        "--grpc-restricted-protocol=metadata,health:k2=v2",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "unknown restricted protocol 'model-reposit'" in done.stderr
