from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from inferd.core.datatypes import (
    DATATYPES,
    config_datatype,
    deserialize_bytes,
    element_size,
    from_config_datatype,
    numpy_dtype,
    serialize_bytes,
    v2_datatype,
)
from inferd.core.errors import InvalidArgument

EXPECTED = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BF16": ml_dtypes.bfloat16,
    "BYTES": np.object_,
}


def test_table_is_complete() -> None:
    assert set(DATATYPES) == set(EXPECTED)


@pytest.mark.parametrize(("datatype", "numpy_type"), EXPECTED.items())
def test_round_trip(datatype: str, numpy_type: type) -> None:
    dtype = numpy_dtype(datatype)
    assert dtype == np.dtype(numpy_type)
    assert v2_datatype(dtype) == datatype
    assert from_config_datatype(config_datatype(datatype)) == datatype


def test_sizes() -> None:
    assert element_size("FP32") == 4
    assert element_size("BF16") == 2
    assert element_size("BOOL") == 1
    assert element_size("BYTES") == 0


def test_string_config_type_is_bytes() -> None:
    assert config_datatype("BYTES") == "TYPE_STRING"
    assert from_config_datatype("TYPE_STRING") == "BYTES"


def test_numpy_strings_are_bytes() -> None:
    assert v2_datatype(np.array(["a"]).dtype) == "BYTES"
    assert v2_datatype(np.array([b"a"]).dtype) == "BYTES"


@pytest.mark.parametrize("name", ["FLOAT", "fp32", "", "TYPE_FP32"])
def test_unknown_datatype(name: str) -> None:
    with pytest.raises(InvalidArgument, match="unknown datatype"):
        numpy_dtype(name)


def test_unknown_config_type() -> None:
    with pytest.raises(InvalidArgument):
        from_config_datatype("TYPE_INVALID")


def test_complex_has_no_v2_datatype() -> None:
    with pytest.raises(InvalidArgument):
        v2_datatype(np.dtype(np.complex64))


def test_bytes_serialization_round_trip() -> None:
    array = np.array([b"", b"hello", "w\u00f6rld", b"\x00\xff"], dtype=np.object_)
    encoded = serialize_bytes(array)
    assert encoded[:4] == b"\x00\x00\x00\x00"
    decoded = deserialize_bytes(encoded, 4)
    assert list(decoded) == [b"", b"hello", "w\u00f6rld".encode(), b"\x00\xff"]


@pytest.mark.parametrize(
    ("data", "count", "message"),
    [
        (b"\x05\x00\x00\x00abc", 1, "longer than"),
        (b"\x01\x00", 1, "cannot hold"),
        # Triton's words (its QA, L0_input_validation, matches them).
        (b"\x01\x00\x00\x00a\x01\x00\x00", 2, "incomplete string length indicator"),
        (b"\x01\x00\x00\x00ab", 1, "incomplete string length indicator"),
        (b"\x03\x00\x00\x00abc" * 3, 4, "expected 4 string elements, got 3"),
        (b"\x01\x00\x00\x00a" * 3, 2, "unexpected number of string elements 3, expecting 2"),
        (b"", 1, "cannot hold"),
    ],
)
def test_bytes_deserialization_errors(data: bytes, count: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        deserialize_bytes(data, count)
