"""The plans of binary-tensor headers seen before decode as the full path does."""

from __future__ import annotations

import json
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import pytest

from inferd.core.errors import InvalidArgument
from inferd.core.types import InferRequest
from inferd.frontends.http import known_headers
from inferd.frontends.http.codec import decode_infer_request
from inferd.frontends.http.known_headers import KnownHeaders
from inferd.frontends.shared_memory import DISABLED, SharedMemoryRegistry


def _input(name: str, shape: list[int], datatype: str, size: int) -> dict[str, Any]:
    return {
        "name": name,
        "shape": shape,
        "datatype": datatype,
        "parameters": {"binary_data_size": size},
    }


def _header(**extra: Any) -> bytes:
    document = {
        "inputs": [_input("a", [1, 3], "INT32", 12), _input("b", [2], "FP32", 8)],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        "parameters": {"priority": 1},
        **extra,
    }
    return json.dumps(document).encode()


def _body(header: bytes, seed: int) -> bytes:
    a = np.arange(3, dtype=np.int32) + seed
    b = np.array([seed, -seed], dtype=np.float32)
    return header + a.tobytes() + b.tobytes()


def same_request(left: InferRequest, right: InferRequest) -> None:
    """The two decodings agree, and the fast one's inputs are read-only views (as the full
    path's are)."""
    assert (left.model_name, left.model_version, left.id) == (
        right.model_name,
        right.model_version,
        right.id,
    )
    assert list(left.inputs) == list(right.inputs)
    for name, array in left.inputs.items():
        other = right.inputs[name]
        assert array.dtype == other.dtype and array.shape == other.shape
        np.testing.assert_array_equal(array, other)
        assert not array.flags.writeable
    assert left.outputs == right.outputs
    assert left.parameters == right.parameters


def test_a_header_seen_before_decodes_as_the_full_path() -> None:
    headers = KnownHeaders()
    header = _header()
    for seed in range(3):  # the first decodes in full and is kept; the others use its plan
        body = _body(header, seed)
        decoded = headers.decode(body, len(header), "m", "2", DISABLED)
        same_request(decoded, decode_infer_request(body, len(header), "m", "2"))
    assert len(headers._plans) == 1


class BodyNotToHash(bytes):
    """A request body whose hashing fails the test: a look-up of its header that hashed the
    whole body would cost its whole length per request (0.6 ms for a 1 MB tensor)."""

    def __hash__(self) -> int:
        raise AssertionError("the whole body was hashed")


def test_a_header_is_looked_up_without_hashing_the_body() -> None:
    headers = KnownHeaders()
    header = _header()
    for seed in range(2):  # decoded in full and kept, then through its plan
        body = _body(header, seed)
        decoded = headers.decode(BodyNotToHash(body), len(header), "m", "2", DISABLED)
        same_request(decoded, decode_infer_request(body, len(header), "m", "2"))
    assert len(headers._plans) == 1


def test_each_request_gets_its_own_containers() -> None:
    headers = KnownHeaders()
    header = _header()
    first = headers.decode(_body(header, 1), len(header), "m", "", DISABLED)
    second = headers.decode(_body(header, 2), len(header), "m", "", DISABLED)
    third = headers.decode(_body(header, 3), len(header), "m", "", DISABLED)
    assert second.outputs is not None and third.outputs is not None
    second.parameters["priority"] = 9
    second.outputs[0].parameters["binary_data"] = False
    assert third.parameters == {"priority": 1} == first.parameters
    assert third.outputs[0].parameters == {"binary_data": True}
    assert second.timestamps is not third.timestamps


def test_binary_data_of_another_length_takes_the_full_path_and_its_error() -> None:
    headers = KnownHeaders()
    header = _header()
    headers.decode(_body(header, 0), len(header), "m", "", DISABLED)
    with pytest.raises(InvalidArgument, match="binary_data_size 8 runs past"):
        headers.decode(_body(header, 0)[:-4], len(header), "m", "", DISABLED)
    with pytest.raises(InvalidArgument, match="4 bytes of binary data no input claims"):
        headers.decode(_body(header, 0) + b"\0" * 4, len(header), "m", "", DISABLED)


_IN_SHARED_MEMORY = {"shared_memory_region": "r", "shared_memory_byte_size": 4}


@pytest.mark.parametrize(
    "header",
    [
        _header(id="r1"),  # a request id
        _header(parameters={"nested": [1]}),  # a parameter a copy would share
        # BYTES: the elements' lengths are in the data
        json.dumps({"inputs": [_input("s", [1], "BYTES", 5)]}).encode(),
        _header(outputs=[{"name": "y", "parameters": _IN_SHARED_MEMORY}]),
        # the same, past a search for the words: JSON may escape any character of a key
        _header(outputs=[{"name": "y", "parameters": _IN_SHARED_MEMORY}]).replace(
            b"shared_memory_", b"shared_memory\\u005f"
        ),
    ],
)
def test_headers_whose_meaning_may_change_are_not_kept(header: bytes) -> None:
    headers = KnownHeaders()
    document = json.loads(header)
    sizes = sum(item["parameters"]["binary_data_size"] for item in document["inputs"])
    data = b"\1\0\0\0a" if sizes == 5 else bytes(sizes)
    memory = SharedMemory(create=True, size=64)
    registry = SharedMemoryRegistry(enabled=True)
    try:
        registry.register("r", f"/{memory.name}", 0, 64)
        for _ in range(2):
            headers.decode(header + data, len(header), "m", "", registry)
    finally:
        registry.close()
        memory.close()
        memory.unlink()
    assert not headers._plans


def test_the_oldest_plan_goes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(known_headers, "MAX_PLANS", 2)
    headers = KnownHeaders()
    kept = [_header(parameters={"n": n}) for n in range(3)]
    for header in kept:
        headers.decode(_body(header, 0), len(header), "m", "", DISABLED)
    assert list(headers._plans) == kept[1:]
