"""numpy <-> torch at the backend's edge: zero copy on CPU, one pinned copy per input on GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import ml_dtypes
import numpy as np

from inferd.core.datatypes import config_datatype
from inferd.core.types import Array

if TYPE_CHECKING:
    import torch

# torch dtype (as str(dtype), so this module needs no torch import) -> V2 datatype.
_DATATYPE_BY_TORCH: Final = {
    "torch.bool": "BOOL",
    "torch.uint8": "UINT8",
    "torch.uint16": "UINT16",
    "torch.uint32": "UINT32",
    "torch.uint64": "UINT64",
    "torch.int8": "INT8",
    "torch.int16": "INT16",
    "torch.int32": "INT32",
    "torch.int64": "INT64",
    "torch.float16": "FP16",
    "torch.float32": "FP32",
    "torch.float64": "FP64",
    "torch.bfloat16": "BF16",
}
_BF16: Final = np.dtype(ml_dtypes.bfloat16)


def config_type(dtype: torch.dtype) -> str | None:
    """The model-config TYPE_* name of a torch dtype, or None when the config has none."""
    datatype = _DATATYPE_BY_TORCH.get(str(dtype))
    return None if datatype is None else config_datatype(datatype)


def to_torch(array: Array, device: torch.device) -> torch.Tensor:
    """A tensor over `array`'s memory on CPU; on a GPU, one copy through pinned host memory."""
    import torch

    if array.dtype == _BF16:
        # numpy knows bfloat16 only through ml_dtypes, which torch cannot read: same bits, viewed.
        tensor = torch.from_numpy(array.view(np.uint16)).view(torch.bfloat16)
    else:
        tensor = torch.from_numpy(array)
    if device.type == "cpu":
        return tensor
    # Asynchronous only from pinned memory; the caching host allocator keeps the pinned block
    # alive until the copy on the current stream has finished.
    return tensor.pin_memory().to(device, non_blocking=True)


def to_numpy(tensor: torch.Tensor) -> Array:
    """A numpy array of a model output, copied to host memory when it lives on a GPU."""
    import torch

    host = tensor.detach().cpu()
    if host.dtype == torch.bfloat16:
        return host.view(torch.uint16).numpy().view(_BF16)
    array: Array = host.numpy()
    return array
