"""ModelInfer answers with a kept header serialise to exactly what protobuf writes."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from inferd.core.errors import Unsupported
from inferd.core.types import InferResponse, RequestedOutput
from inferd.frontends.grpc import unary_headers
from inferd.frontends.grpc.unary_headers import UnaryHeaders
from inferd.frontends.grpc.wire import serialize_infer_response
from inferd.frontends.shared_memory import DISABLED
from tests.unit.frontends.test_grpc_wire import _standard


def _protobuf_bytes(response: InferResponse) -> bytes:
    """What the answer would be through protobuf alone."""
    message: pb.ModelInferResponse = _standard(response)
    return message.SerializeToString()


def _response(seed: int, **extra: object) -> InferResponse:
    outputs = {
        "y": np.arange(4, dtype=np.int32).reshape(2, 2) + seed,
        "s": np.array([b"a" * seed, b"b"], dtype=np.object_),
    }
    return InferResponse("m", "1", outputs, **extra)  # type: ignore[arg-type]


def test_answers_with_a_known_header_are_protobufs_own() -> None:
    headers = UnaryHeaders()
    for seed in range(3):  # the first builds the header; the others reuse it
        response = _response(seed)
        encoded = headers.encode(response, None, DISABLED)
        assert serialize_infer_response(encoded) == _protobuf_bytes(response)
    assert len(headers._headers) == 1


def test_answers_without_bytes_outputs_are_joined_at_once() -> None:
    headers = UnaryHeaders()
    for seed in range(3):  # the first builds the prefixes; the others join the answer at once
        outputs = {"y": np.arange(4, dtype=np.int32).reshape(2, 2) + seed, "z": np.ones(3)}
        response = InferResponse("m", "1", outputs)
        encoded = headers.encode(response, None, DISABLED)
        assert isinstance(encoded, bytes) == (seed > 0)
        assert serialize_infer_response(encoded) == _protobuf_bytes(response)


def test_another_id_or_shape_gets_its_own_header() -> None:
    headers = UnaryHeaders()
    responses = [
        _response(1),
        _response(1, id="r7"),
        InferResponse("m", "1", {"y": np.zeros((3, 2), np.int32)}),
        InferResponse("m", "2", {"y": np.zeros((3, 2), np.int32)}),
    ]
    for response in responses * 2:
        encoded = headers.encode(response, None, DISABLED)
        assert serialize_infer_response(encoded) == _protobuf_bytes(response)
    assert len(headers._headers) == len(responses)


@pytest.mark.parametrize(
    ("extra", "requested"),
    [
        ({"parameters": {"p": 7}}, None),
        ({}, [RequestedOutput("y", {"shared_memory_region": "r", "shared_memory_byte_size": 16})]),
    ],
)
def test_answers_with_parameters_or_shared_memory_are_built_in_full(
    extra: dict[str, object], requested: list[RequestedOutput] | None
) -> None:
    headers = UnaryHeaders()
    response = _response(1, **extra)
    if requested is None:
        encoded = headers.encode(response, requested, DISABLED)
        assert serialize_infer_response(encoded) == _protobuf_bytes(response)
    else:  # written to a region: this server has none, so it is refused, as in full
        with pytest.raises(Unsupported, match="shared memory is disabled"):
            headers.encode(response, requested, DISABLED)
    assert not headers._headers


def test_the_oldest_header_goes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unary_headers, "MAX_HEADERS", 2)
    headers = UnaryHeaders()
    for version in "123":
        headers.encode(InferResponse("m", version, {"y": np.zeros(1, np.int32)}), None, DISABLED)
    assert [key[1] for key in headers._headers] == ["2", "3"]
