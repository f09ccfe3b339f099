"""Triton's `pb_utils.Tensor`: a named numpy array, on the CPU (inferd's Python models get
and return host memory), with DLPack exchange for frameworks such as PyTorch."""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.backends.python.triton_errors import TritonModelException
from inferd.core.datatypes import from_config_datatype, numpy_dtype, v2_datatype
from inferd.core.types import Array

_DLPACK_CPU = 1  # DLDeviceType kDLCPU


class Tensor:
    def __init__(self, name: str, array: Any) -> None:
        self._name = name
        self._array: Array = np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> Array:
        return self._array

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def triton_dtype(self) -> int:
        """The datatype as Triton's `TRITONSERVER_DataType` value (TYPE_FP32 -> 11)."""
        return _TRITON_DTYPES.index(v2_datatype(self._array.dtype))

    def is_cpu(self) -> bool:
        return True  # inferd hands Python models host memory only

    def to_dlpack(self) -> Any:
        """A DLPack capsule sharing the array's memory (e.g. for
        `torch.utils.dlpack.from_dlpack`)."""
        return _exportable(self._name, self._array).__dlpack__()

    def __dlpack__(self, stream: Any = None) -> Any:
        return self.to_dlpack()

    def __dlpack_device__(self) -> tuple[int, int]:
        return (_DLPACK_CPU, 0)

    @staticmethod
    def from_dlpack(name: str, dlpack_tensor: Any) -> Tensor:
        """A tensor sharing the memory of a CPU object that speaks DLPack (a torch CPU tensor,
        a numpy array) or of a DLPack capsule."""
        source = dlpack_tensor if hasattr(dlpack_tensor, "__dlpack__") else _Capsule(dlpack_tensor)
        try:
            return Tensor(name, np.from_dlpack(source))
        except (BufferError, RuntimeError, TypeError) as exc:
            raise TritonModelException(
                f"Tensor.from_dlpack('{name}'): inferd's Python backend takes CPU memory "
                f"only: {exc}"
            ) from exc


class _Capsule:
    """A bare capsule, which numpy takes only from an object that says where it lives."""

    def __init__(self, capsule: Any) -> None:
        self._capsule = capsule

    def __dlpack__(self, stream: Any = None, **_: Any) -> Any:
        return self._capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (_DLPACK_CPU, 0)


def _exportable(name: str, array: Array) -> Array:
    if array.dtype.kind in "OUS":
        raise TritonModelException(f"tensor '{name}' holds BYTES, which DLPack cannot carry")
    # DLPack cannot mark memory read-only (numpy refuses to export it): a request's inputs
    # decoded from the wire are, so they are copied.
    return array if array.flags.writeable else array.copy()


# `TRITONSERVER_DataType` in order: INVALID = 0, BOOL = 1, ... BF16 = 14.
_TRITON_DTYPES = (
    "INVALID", "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
    "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16",
)  # fmt: skip


def triton_to_numpy_type(data_type: int) -> Any:
    """Triton's `TRITONSERVER_DataType` value -> the numpy type (BYTES -> numpy.object_)."""
    return numpy_dtype(_TRITON_DTYPES[data_type]).type


def numpy_to_triton_type(data_type: Any) -> int:
    return _TRITON_DTYPES.index(v2_datatype(np.dtype(data_type)))


def triton_string_to_numpy(triton_type: str) -> Any:
    """'TYPE_FP32' -> numpy.float32 (TYPE_STRING -> numpy.object_), as Triton's helper does."""
    return numpy_dtype(from_config_datatype(triton_type)).type
