"""The KServe V2 datatype table and its mapping to numpy and to Triton config types.

BYTES tensors are numpy object arrays whose elements are `bytes`. BF16 uses the
`ml_dtypes.bfloat16` numpy extension type.
"""

from __future__ import annotations

import struct
from typing import Final

import ml_dtypes
import numpy as np
import numpy.typing as npt

from inferd.core.errors import InvalidArgument

BYTES: Final = "BYTES"

_NUMPY_BY_DATATYPE: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    BYTES: np.dtype(np.object_),
}
_DATATYPE_BY_NUMPY: Final[dict[np.dtype[np.generic], str]] = {
    dtype: name for name, dtype in _NUMPY_BY_DATATYPE.items()
}
# numpy unicode and bytes arrays (e.g. string outputs of a model) travel as BYTES too.
_DATATYPE_BY_KIND: Final = {"U": BYTES, "S": BYTES, "O": BYTES}

DATATYPES: Final = tuple(_NUMPY_BY_DATATYPE)


def numpy_dtype(datatype: str) -> np.dtype[np.generic]:
    """The numpy dtype of a V2 datatype name; raises `InvalidArgument` for an unknown name."""
    try:
        return _NUMPY_BY_DATATYPE[datatype]
    except KeyError:
        raise InvalidArgument(f"unknown datatype '{datatype}'") from None


def v2_datatype(dtype: np.dtype[np.generic]) -> str:
    """The V2 datatype name of a numpy dtype."""
    name = _DATATYPE_BY_NUMPY.get(dtype) or _DATATYPE_BY_KIND.get(dtype.kind)
    if name is None:
        raise InvalidArgument(f"numpy dtype {dtype} has no V2 datatype")
    return name


def element_size(datatype: str) -> int:
    """Bytes per element for fixed-size datatypes; 0 for BYTES (variable length)."""
    return 0 if datatype == BYTES else numpy_dtype(datatype).itemsize


# Triton model config uses TYPE_* names; V2 uses the bare names, except STRING <-> BYTES.
def config_datatype(datatype: str) -> str:
    """V2 datatype -> model-config enum name (FP32 -> TYPE_FP32, BYTES -> TYPE_STRING)."""
    return "TYPE_STRING" if datatype == BYTES else f"TYPE_{datatype}"


def from_config_datatype(config_name: str) -> str:
    """Model-config enum name -> V2 datatype (TYPE_STRING -> BYTES)."""
    if config_name == "TYPE_STRING":
        return BYTES
    name = config_name.removeprefix("TYPE_")
    if name not in _NUMPY_BY_DATATYPE:
        raise InvalidArgument(f"unsupported config datatype '{config_name}'")
    return name


def deserialize_bytes(
    buffer: bytes | memoryview, count: int, where: str = ""
) -> npt.NDArray[np.object_]:
    """Decode exactly `count` length-prefixed (uint32 little-endian) elements; `where` (e.g.
    " for inference input 'X' for model 'M'") places the tensor in errors, worded as Triton's."""
    view = memoryview(buffer)
    if count * 4 > len(view):  # each element needs its 4-byte length: refuse before allocating
        raise InvalidArgument(
            f"expected {count} string elements{where}, but {len(view)} bytes cannot hold "
            f"{count} BYTES elements"
        )
    out = np.empty(count, dtype=np.object_)
    offset = 0
    end = len(view)
    for index in range(count):
        if offset == end:
            raise InvalidArgument(f"expected {count} string elements{where}, got {index}")
        if offset + 4 > end:
            raise _incomplete_length(where, end - offset)
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > end:
            raise InvalidArgument(
                f"string element {index}{where} is longer than the data that remains"
            )
        out[index] = bytes(view[offset : offset + length])
        offset += length
    if offset + 4 <= end:
        raise InvalidArgument(
            f"unexpected number of string elements {count + 1}{where}, expecting {count}"
        )
    if offset != end:
        raise _incomplete_length(where, end - offset)
    return out


def _incomplete_length(where: str, available: int) -> InvalidArgument:
    return InvalidArgument(
        f"incomplete string length indicator{where}, expecting 4 bytes but only {available} "
        "bytes available"
    )


def serialize_bytes(array: npt.NDArray[np.generic]) -> bytes:
    """Encode a BYTES tensor (row-major) as length-prefixed elements."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        data = as_bytes(item)
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def as_bytes(item: object) -> bytes:
    """One BYTES element as bytes (str is UTF-8 encoded, anything else is formatted)."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, np.bytes_ | bytearray | memoryview):
        return bytes(item)
    return str(item).encode()
