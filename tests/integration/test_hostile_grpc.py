"""Hostile gRPC requests: bytes that do not parse as the request message, and errors that echo
huge client strings, must get INVALID_ARGUMENT (never UNKNOWN, INTERNAL or a transport error)
while the server keeps serving."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

import generate_models
from tests.integration.server import RunningServer, running_server

EXAMPLES = Path(generate_models.__file__).parent / "model_repository"
STATE = "sequence_accumulate_state"  # takes string and integer sequence ids


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("hostile_grpc")
    shutil.copytree(EXAMPLES / STATE, root / STATE)
    with running_server(root) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_url) as opened:
        yield opened


def sequence_request(sequence_id: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=STATE)
    tensor = request.inputs.add(name="INPUT", datatype="INT32", shape=[1, 1])
    tensor.contents.int_contents.append(1)
    request.parameters["sequence_id"].string_param = sequence_id
    request.parameters["sequence_start"].bool_param = True
    request.parameters["sequence_end"].bool_param = True
    return request


def raw_infer(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:
    """ModelInfer with the request bytes sent as they are."""
    return channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=lambda data: data,
        response_deserializer=pb.ModelInferResponse.FromString,
    )


def assert_serving(channel: grpc.Channel) -> None:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    response = stub.ModelInfer(sequence_request("still-serving"), timeout=30)
    assert [output.name for output in response.outputs] == ["OUTPUT"]


def valid_bytes() -> bytes:
    data: bytes = sequence_request("AAAA").SerializeToString()
    return data


@pytest.mark.parametrize(
    "payload",
    [
        # A string_param (proto3 `string`) holding bytes that are not UTF-8.
        pytest.param(valid_bytes().replace(b"AAAA", b"\xff\xfeAA"), id="non-utf8-string-param"),
        pytest.param(valid_bytes()[:-3], id="truncated"),
        pytest.param(b"\xff" * 50, id="garbage"),
    ],
)
def test_unparseable_request_is_invalid_argument(channel: grpc.Channel, payload: bytes) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        raw_infer(channel)(payload, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ModelInferRequest" in (raised.value.details() or "")
    assert_serving(channel)


def test_unparseable_stream_message_is_answered_in_stream(channel: grpc.Channel) -> None:
    stream = channel.stream_stream(
        "/inference.GRPCInferenceService/ModelStreamInfer",
        request_serializer=lambda data: data,
        response_deserializer=pb.ModelStreamInferResponse.FromString,
    )
    good = valid_bytes()
    answers = list(stream(iter([b"\xff" * 50, good]), timeout=30))
    assert len(answers) == 2
    assert "ModelInferRequest" in answers[0].error_message
    assert answers[1].error_message == ""
    assert answers[1].infer_response.outputs[0].name == "OUTPUT"


def test_unparseable_metadata_request_is_invalid_argument(channel: grpc.Channel) -> None:
    metadata = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelMetadata",
        request_serializer=lambda data: data,
        response_deserializer=pb.ModelMetadataResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as raised:
        metadata(b"\x0a\x02\xff\xfe", timeout=30)  # name = two bytes that are not UTF-8
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_error_echoing_a_huge_string_stays_invalid_argument(channel: grpc.Channel) -> None:
    """The error names the client's 10,000-character model name; gRPC clients refuse status
    details beyond their metadata limit (16 KiB), which would hide the real error."""
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    request = sequence_request("x")
    request.model_name = "é" * 10_000
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "truncated" in (raised.value.details() or "")
    assert_serving(channel)
