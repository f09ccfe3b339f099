"""Tensors in Triton's trace file (trace level TENSORS): one object per tensor, with its
activity and the tensor's name, values, shape and datatype, each as a string.

Values are comma-separated in row-major order: integers as they are, booleans as 1 and 0,
floats with 6 significant digits (as Triton's C++ stream writes them), BYTES elements in
double quotes (so `csv` reads them back, as Triton's `trace_summary.py` does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.core.datatypes import v2_datatype
from inferd.core.types import Array

# (activity, tensor name, array): what a trace holds until it is written.
TracedTensor = tuple[str, str, Array]


def tensor_object(trace_id: int, tensor: TracedTensor) -> dict[str, Any]:
    activity, name, array = tensor
    return {
        "id": trace_id,
        "activity": activity,
        "tensor": {
            "name": name,
            "data": _data(array),
            "shape": ",".join(str(d) for d in array.shape),
            "dtype": v2_datatype(array.dtype),
        },
    }


def _data(array: Array) -> str:
    kind = array.dtype.kind
    if kind in "OSU":
        return ",".join(f'"{_text(item)}"' for item in array.ravel().tolist())
    if kind in "fV":  # V: BF16, an extension type
        return ",".join(f"{value:g}" for value in array.astype(np.float64).ravel().tolist())
    if kind == "b":
        return ",".join("1" if value else "0" for value in array.ravel().tolist())
    return ",".join(str(value) for value in array.ravel().tolist())


def _text(item: object) -> str:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
