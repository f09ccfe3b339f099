"""Response cache keys (what changes a key and what does not) and LRU eviction by size."""

from __future__ import annotations

import numpy as np
import pytest

from inferd.core.errors import InvalidArgument
from inferd.core.types import InferRequest, RequestedOutput
from inferd.engine.response_cache import ResponseCache, cache_capacity, cache_key

A = np.arange(6, dtype=np.float32)


def _request(**changes: object) -> InferRequest:
    request = InferRequest(
        "m",
        {
            "A": A.reshape(2, 3),
            "S": np.array([b"x", b"yz"], dtype=np.object_),
        },
    )
    for name, value in changes.items():
        setattr(request, name, value)
    return request


def _key(request: InferRequest, model: str = "m", version: int = 1) -> bytes:
    return cache_key(model, version, request)


def test_the_same_request_has_the_same_key_whatever_the_input_order() -> None:
    request = _request()
    reordered = _request(inputs=dict(reversed(list(request.inputs.items()))))
    assert _key(request) == _key(_request()) == _key(reordered)
    assert len(_key(request)) == 16


def _inputs(a: np.ndarray, s: list[bytes], name: str = "A") -> dict[str, object]:
    return {"inputs": {name: a, "S": np.array(s, dtype=np.object_)}}


@pytest.mark.parametrize(
    "changed",
    [
        _inputs(A.reshape(3, 2), [b"x", b"yz"]),
        _inputs(A.astype(np.float64).reshape(2, 3), [b"x", b"yz"]),
        _inputs((A + 1).reshape(2, 3), [b"x", b"yz"]),
        _inputs(A.reshape(2, 3), [b"xy", b"z"]),
        _inputs(A.reshape(2, 3), [b"x", b"yz"], "B"),
        {"outputs": [RequestedOutput("OUT0")]},
        {"outputs": [RequestedOutput("OUT0", {"classification": 2})]},
        {"parameters": {"custom": "1"}},
    ],
    ids=["shape", "datatype", "bytes", "bytes-elements", "name", "outputs", "class", "params"],
)
def test_what_decides_the_outputs_changes_the_key(changed: dict[str, object]) -> None:
    assert _key(_request(**changed)) != _key(_request())


def test_model_and_version_change_the_key() -> None:
    assert len({_key(_request()), _key(_request(), "n"), _key(_request(), version=2)}) == 3


def test_how_and_when_the_answer_travels_does_not_change_the_key() -> None:
    plain = _key(_request(outputs=[RequestedOutput("OUT0")]))
    shared = RequestedOutput(
        "OUT0",
        {"shared_memory_region": "r", "shared_memory_byte_size": 24, "binary_data": True},
    )
    parameters = {"priority": 1, "timeout": 5, "binary_data_output": True}
    assert _key(_request(outputs=[shared], parameters=parameters)) == plain


def test_a_non_contiguous_input_hashes_as_its_values() -> None:
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    strided = _request(inputs={"A": array.T})
    copied = _request(inputs={"A": np.ascontiguousarray(array.T)})
    assert _key(strided) == _key(copied)


def _outputs(nbytes: int, fill: int = 0) -> dict[str, np.ndarray]:
    return {"Y": np.full(nbytes, fill, dtype=np.uint8)}


# What Triton's cache packs besides the data of `_outputs`: the output count (4), the output's
# total size (8), its name, datatype and shape each after a 4-byte size ("Y", "UINT8", one
# 8-byte dimension), its data after an 8-byte size.
PACKING = 4 + 8 + (4 + 1) + (4 + 5) + (4 + 8) + 8
ENTRY = 1 + PACKING + 100  # a 1-byte key and 100 bytes of data


def test_lookup_returns_a_read_only_copy_in_a_new_dict() -> None:
    cache = ResponseCache(1000)
    original = _outputs(10, 7)
    cache.insert(b"k", original)
    original["Y"][0] = 0  # the model's own array stays the model's
    found = cache.lookup(b"k")
    assert found is not None and found["Y"].tolist() == [7] * 10
    assert not found["Y"].flags.writeable
    found.pop("Y")
    assert cache.lookup(b"k") is not None and cache.lookup(b"missing") is None


def test_the_least_recently_used_entries_go_first_within_the_size() -> None:
    cache = ResponseCache(3 * ENTRY)  # three entries of 100 bytes and a 1-byte key
    for key in (b"a", b"b", b"c"):
        cache.insert(key, _outputs(100))
    assert cache.used == 3 * ENTRY and len(cache) == 3
    assert cache.lookup(b"a") is not None  # now b is the least recently used
    cache.insert(b"d", _outputs(100))
    assert cache.lookup(b"b") is None
    assert all(cache.lookup(k) is not None for k in (b"a", b"c", b"d"))
    cache.insert(b"e", _outputs(200))  # needs two entries' room: the two least recent go
    assert [cache.lookup(k) is not None for k in (b"a", b"c", b"d", b"e")] == [
        False,
        False,
        True,
        True,
    ]
    assert cache.used == ENTRY + (ENTRY + 100)


def test_an_entry_larger_than_the_cache_is_not_stored_and_evicts_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = ResponseCache(ENTRY + 1)
    cache.insert(b"a", _outputs(100))
    cache.insert(b"b", _outputs(102))
    assert cache.lookup(b"b") is None and cache.lookup(b"a") is not None
    # Triton's words, which its QA (L0_response_cache) looks for
    assert f"Failed to insert key [62] into response cache: the entry's {ENTRY + 2} bytes" in (
        caplog.text
    )


def test_an_entry_counts_what_tritons_cache_packs() -> None:
    # L0_response_cache: two FP32 [1, 16] outputs and their key do not fit in 200 bytes.
    cache = ResponseCache(200)
    row = np.ones((1, 16), dtype=np.float32)
    cache.insert(bytes(16), {"OUTPUT0": row, "OUTPUT1": row})
    assert len(cache) == 0
    cache = ResponseCache(1000)
    cache.insert(bytes(16), {"OUTPUT0": row, "OUTPUT1": row})
    assert cache.used == 16 + 4 + 2 * (8 + (4 + 7) + (4 + 4) + (4 + 16) + (8 + 64))


def test_inserting_a_key_twice_keeps_one_entry() -> None:
    cache = ResponseCache(1000)
    cache.insert(b"a", _outputs(100))
    cache.insert(b"a", _outputs(100, 1))
    assert len(cache) == 1 and cache.used == ENTRY


def test_bytes_outputs_count_their_elements() -> None:
    cache = ResponseCache(1000)
    cache.insert(b"a", {"S": np.array([b"x" * 300, b"y" * 200], dtype=np.object_)})
    # each element after its 4-byte length; the datatype is "BYTES"
    assert cache.used == 1 + PACKING + (4 + 300) + (4 + 200)


@pytest.mark.parametrize(
    ("values", "capacity"),
    [
        ((), 0),
        (("local,size=1048576",), 1048576),
        (("local,size=1", "local,size=2"), 2),
        (("local", "size=5"), 5),  # INFERD_CACHE_CONFIG=local,size=5, split at its comma
    ],
)
def test_cache_config_in_tritons_syntax(values: tuple[str, ...], capacity: int) -> None:
    assert cache_capacity(values) == capacity


@pytest.mark.parametrize(
    "value", ["redis,host=x", "local,size=0", "local,size=-1", "local", "size=5", "local,ttl=3"]
)
def test_other_cache_configs_are_refused(value: str) -> None:
    with pytest.raises(InvalidArgument, match="--cache-config"):
        cache_capacity([value])


def test_two_caches_are_refused_in_tritons_words() -> None:
    with pytest.raises(InvalidArgument, match="found multiple cache configurations"):
        cache_capacity(["local,size=8192", "redis,key=value"])
