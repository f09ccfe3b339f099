"""The three lifetimes of an inferd backend, for a linear layer `OUTPUT0 = INPUT0 @ W + b`.

`model.npz` holds `W` with shape [in, out] and `b` with shape [out]; the config's inputs,
outputs and batching are completed from those shapes, so a model folder needs no config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inferd.backends.autocomplete import ModelTensor, complete_tensors
from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.datatypes import config_datatype, v2_datatype
from inferd.core.errors import InvalidArgument, Unsupported

Array = npt.NDArray[Any]
INPUT, OUTPUT = "INPUT0", "OUTPUT0"


def _read_weights(path: Path) -> tuple[Array, Array]:
    if not path.is_file():
        raise InvalidArgument(f"model file '{path.name}' not found in version folder")
    try:
        with np.load(path) as archive:
            weight, bias = archive["W"], archive["b"]
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidArgument(
            f"'{path.name}' must be an .npz holding arrays W and b: {exc}"
        ) from None
    if weight.ndim != 2 or bias.shape != weight.shape[1:] or weight.dtype != bias.dtype:
        raise InvalidArgument(
            f"W must be [in, out] and b [out] of one dtype; got W {weight.shape} {weight.dtype}, "
            f"b {bias.shape} {bias.dtype}"
        )
    return weight, bias


class NumpyLinearBackend:
    """One per server process: metadata, config auto-complete, and loading."""

    name = "numpy_linear"
    platforms = ("numpy_linear",)
    default_model_filename = "model.npz"

    def gpu_available(self) -> bool:
        return False  # numpy runs on the CPU; KIND_GPU configs are refused at load

    def matches(self, version_path: Path) -> bool:
        return (version_path / self.default_model_filename).is_file()

    def complete_config(self, config: Any, version_path: Path, default_max_batch_size: int) -> None:
        weight, _ = _read_weights(self._model_file(config, version_path))
        data_type = config_datatype(v2_datatype(weight.dtype))
        config.backend = config.backend or self.name
        inputs = [ModelTensor(INPUT, data_type, (None, weight.shape[0]), str(weight.dtype))]
        outputs = [ModelTensor(OUTPUT, data_type, (None, weight.shape[1]), str(weight.dtype))]
        complete_tensors(config, inputs, outputs, default_max_batch_size, "the linear layer")

    def load(self, config: Any, version_path: Path) -> LinearModel:
        return LinearModel(*_read_weights(self._model_file(config, version_path)))

    def _model_file(self, config: Any, version_path: Path) -> Path:
        return version_path / (config.default_model_filename or self.default_model_filename)


class LinearModel:
    """One per loaded model version: the weights, shared by every instance."""

    def __init__(self, weight: Array, bias: Array) -> None:
        self.weight = weight
        self.bias = bias

    def create_instance(self, device: Device, name: str) -> LinearInstance:
        if device.kind is not DeviceKind.CPU:
            raise Unsupported(f"instance '{name}': the numpy_linear backend runs on CPU only")
        return LinearInstance(self)

    def close(self) -> None:
        """Nothing to release: the weights go with the last reference."""


class LinearInstance:
    """One per instance; `execute` runs in the instance's own thread with a stacked batch."""

    def __init__(self, model: LinearModel) -> None:
        self._model = model

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        # numpy's matmul releases the GIL, so instances of one model run in parallel.
        result = inputs[INPUT] @ self._model.weight + self._model.bias
        return {OUTPUT: result}

    def close(self) -> None:
        """Nothing per instance."""
