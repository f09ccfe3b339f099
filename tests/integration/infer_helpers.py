"""Calling a model with numpy arrays through tritonclient.http or tritonclient.grpc."""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
from tritonclient.utils import np_to_triton_dtype


def infer_inputs(module: ModuleType, arrays: Mapping[str, np.ndarray]) -> list[Any]:
    """`module.InferInput`s holding `arrays`, each typed from its dtype (object arrays: BYTES)."""
    tensors = []
    for name, array in arrays.items():
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def infer(client: Any, module: ModuleType, model: str, arrays: Mapping[str, np.ndarray]) -> Any:
    """`client` (of tritonclient `module`) calls `model` with `arrays` as its inputs."""
    return client.infer(model, infer_inputs(module, arrays))
