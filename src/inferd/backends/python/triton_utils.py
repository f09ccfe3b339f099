"""The part of Triton's `triton_python_backend_utils` that classic Python models use.

A model defining `TritonPythonModel` imports this module by Triton's name while it loads
(`model_file.py` registers it); `triton.py` adapts such a model to inferd's interface.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferd.core.datatypes import from_config_datatype, numpy_dtype
from inferd.core.types import Array


class TritonError(Exception):
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, msg: str, code: int = INTERNAL) -> None:
        super().__init__(msg)
        self._message = msg
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


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


class InferenceRequest:
    def __init__(
        self,
        inputs: Sequence[Tensor],
        requested_output_names: Sequence[str],
        request_id: str = "",
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self._inputs = list(inputs)
        self._requested = list(requested_output_names)
        self._id = request_id
        self._parameters = json.dumps(parameters or {})

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._requested

    def request_id(self) -> str:
        return self._id

    def parameters(self) -> str:
        return self._parameters


class InferenceResponse:
    def __init__(
        self, output_tensors: Sequence[Tensor] = (), error: TritonError | None = None
    ) -> None:
        self._outputs = list(output_tensors)
        self._error = error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


def _tensor_config(config: dict[str, Any], kind: str, name: str) -> dict[str, Any] | None:
    return next((t for t in config.get(kind, []) if t.get("name") == name), None)


def get_input_config_by_name(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return _tensor_config(config, "input", name)


def get_output_config_by_name(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return _tensor_config(config, "output", name)


def triton_string_to_numpy(triton_type: str) -> Any:
    """'TYPE_FP32' -> numpy.float32 (TYPE_STRING -> numpy.object_), as Triton's helper does."""
    return numpy_dtype(from_config_datatype(triton_type)).type
