"""The plans of ModelInfer headers seen before decode as the full path does."""

from __future__ import annotations

from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from inferd.core.errors import InvalidArgument
from inferd.core.types import InferRequest
from inferd.frontends.grpc import known_requests
from inferd.frontends.grpc.codec import decode_infer_request
from inferd.frontends.grpc.known_requests import KnownRequests, split
from inferd.frontends.shared_memory import DISABLED, SharedMemoryRegistry
from tests.unit.frontends.test_http_known_headers import BodyNotToHash, same_request


def _message(seed: int = 0, **fields: Any) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(**{"model_name": "m", "model_version": "2", **fields})
    message.inputs.add(name="a", datatype="INT32", shape=[1, 3])
    message.inputs.add(name="b", datatype="FP32", shape=[2])
    output = message.outputs.add(name="y")
    output.parameters["classification"].int64_param = 2
    message.parameters["priority"].int64_param = 1
    message.raw_input_contents.append((np.arange(3, dtype=np.int32) + seed).tobytes())
    message.raw_input_contents.append(np.array([seed, -seed], dtype=np.float32).tobytes())
    return message


def _views(request: InferRequest, data: bytes) -> bool:
    return all(np.shares_memory(a, np.frombuffer(data, np.uint8)) for a in request.inputs.values())


def test_a_header_seen_before_decodes_as_the_full_path_from_the_calls_bytes() -> None:
    known = KnownRequests()
    for seed in range(3):  # the first decodes in full and is kept; the others use its plan
        message = _message(seed)
        data = message.SerializeToString()
        decoded = known.decode(data, DISABLED)
        same_request(decoded, decode_infer_request(message))
        assert _views(decoded, data) == (seed > 0)  # the plan's arrays view the call's bytes
    assert len(known._plans) == 1


def test_a_header_is_looked_up_without_hashing_the_call() -> None:
    known = KnownRequests()
    for seed in range(2):  # decoded in full and kept, then through its plan
        message = _message(seed)
        decoded = known.decode(BodyNotToHash(message.SerializeToString()), DISABLED)
        same_request(decoded, decode_infer_request(message))
    assert len(known._plans) == 1


def test_each_request_gets_its_own_containers() -> None:
    known = KnownRequests()
    first, second, third = (
        known.decode(_message(s).SerializeToString(), DISABLED) for s in (1, 2, 3)
    )
    assert second.outputs is not None and third.outputs is not None
    second.parameters["priority"] = 9
    second.outputs[0].parameters["classification"] = 5
    assert third.parameters == {"priority": 1} == first.parameters
    assert third.outputs[0].parameters == {"classification": 2}
    assert second.timestamps is not third.timestamps


def test_raw_contents_of_another_length_take_the_full_path_and_its_error() -> None:
    known = KnownRequests()
    known.decode(_message().SerializeToString(), DISABLED)
    short = _message()
    short.raw_input_contents[1] = b"\0" * 4
    with pytest.raises(InvalidArgument, match="input byte size mismatch for input 'b'"):
        known.decode(short.SerializeToString(), DISABLED)
    extra = _message()
    extra.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(InvalidArgument, match="expected 2 raw_input_contents"):
        known.decode(extra.SerializeToString(), DISABLED)


def test_bytes_that_do_not_parse_are_malformed() -> None:
    data = _message().SerializeToString()
    with pytest.raises(InvalidArgument, match=r"malformed inference\.ModelInferRequest message"):
        KnownRequests().decode(data[:-3], DISABLED)


def test_a_layout_protobuf_does_not_write_takes_the_full_path() -> None:
    message = _message()
    data = message.SerializeToString()
    header_end, offsets, sizes = split(data) or (0, [], [])
    assert sizes == [12, 8] and offsets[0] > header_end > 0
    # The raw entries first, then the header: the same message to protobuf.
    reordered = data[header_end:] + data[:header_end]
    assert split(reordered) is None
    known = KnownRequests()
    for _ in range(2):
        same_request(known.decode(reordered, DISABLED), decode_infer_request(message))
    assert not known._plans


def test_split_refuses_truncated_lengths() -> None:
    assert split(b"\x0a\x05ab") is None  # a string of 5 bytes, 2 present
    assert split(b"\x0a\xff") is None  # a length varint cut short
    assert split(b"\x0a\x01m") is None  # no raw contents: nothing to plan


def _in_shared_memory() -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="a", datatype="INT32", shape=[1])
    tensor.parameters["shared_memory_region"].string_param = "r"
    tensor.parameters["shared_memory_byte_size"].int64_param = 4
    message.inputs.add(name="b", datatype="INT32", shape=[1])
    message.raw_input_contents.append(b"\0" * 4)
    return message


def _output_in_shared_memory() -> pb.ModelInferRequest:
    message = _message()
    parameters = message.outputs[0].parameters
    parameters["shared_memory_region"].string_param = "r"
    parameters["shared_memory_byte_size"].int64_param = 8
    return message


def _bytes_input() -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="s", datatype="BYTES", shape=[1])
    message.raw_input_contents.append(b"\1\0\0\0a")
    return message


@pytest.mark.parametrize(
    "message",
    [_message(id="r1"), _in_shared_memory(), _output_in_shared_memory(), _bytes_input()],
    ids=["request id", "input in shared memory", "output in shared memory", "BYTES"],
)
def test_headers_whose_meaning_may_change_are_not_kept(message: pb.ModelInferRequest) -> None:
    known = KnownRequests()
    memory = SharedMemory(create=True, size=64)
    registry = SharedMemoryRegistry(enabled=True)
    try:
        registry.register("r", f"/{memory.name}", 0, 64)
        for _ in range(2):
            known.decode(message.SerializeToString(), registry)
    finally:
        registry.close()
        memory.close()
        memory.unlink()
    assert not known._plans


def test_the_oldest_plan_goes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(known_requests, "MAX_PLANS", 2)
    known = KnownRequests()
    data = [_message(model_name=f"m{n}").SerializeToString() for n in range(3)]
    for one in data:
        known.decode(one, DISABLED)
    headers = [one[: (split(one) or (0,))[0]] for one in data]
    assert list(known._plans) == headers[1:]
