"""Triton's `triton_python_backend_utils`, as inferd provides it.

A model defining `TritonPythonModel` imports this module by Triton's name while it loads
(`model_file.py` registers it); `triton.py` adapts such a model to inferd's interface. A name
Triton's module has and this one does not fails with an error naming it (`__getattr__`).
"""

from __future__ import annotations

from typing import Any

from inferd.backends.python.custom_metrics import Metric, MetricFamily, MetricKind
from inferd.backends.python.model_log import Logger, LogLevel
from inferd.backends.python.triton_config import (
    ModelConfig,
    get_input_config_by_name,
    get_output_config_by_name,
    using_decoupled_model_transaction_policy,
)
from inferd.backends.python.triton_errors import TritonError, TritonModelException
from inferd.backends.python.triton_messages import (
    TRITONSERVER_REQUEST_FLAG_SEQUENCE_END,
    TRITONSERVER_REQUEST_FLAG_SEQUENCE_START,
    TRITONSERVER_REQUEST_RELEASE_ALL,
    TRITONSERVER_REQUEST_RELEASE_RESCHEDULE,
    TRITONSERVER_RESPONSE_COMPLETE_FINAL,
    InferenceRequest,
    InferenceResponse,
    InferenceResponseSender,
    InferenceTrace,
)
from inferd.backends.python.triton_tensor import (
    Tensor,
    numpy_to_triton_type,
    triton_string_to_numpy,
    triton_to_numpy_type,
)

__all__ = [
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_START",
    "TRITONSERVER_REQUEST_RELEASE_ALL",
    "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE",
    "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
    "InferenceRequest",
    "InferenceResponse",
    "InferenceResponseSender",
    "InferenceTrace",
    "LogLevel",
    "Logger",
    "Metric",
    "MetricFamily",
    "MetricKind",
    "ModelConfig",
    "Tensor",
    "TritonError",
    "TritonModelException",
    "get_input_config_by_name",
    "get_input_tensor_by_name",
    "get_output_config_by_name",
    "get_output_tensor_by_name",
    "numpy_to_triton_type",
    "triton_string_to_numpy",
    "triton_to_numpy_type",
    "using_decoupled_model_transaction_policy",
]

# Triton's names inferd does not provide, and why.
_NOT_PROVIDED = {
    "load_model": "loading models from a model's code",
    "unload_model": "unloading models from a model's code",
    "is_model_ready": "model readiness from a model's code",
    "PreferredMemory": "GPU output memory (inferd's Python models work in host memory)",
    "MemoryType": "GPU output memory (inferd's Python models work in host memory)",
    "TRITONSERVER_MEMORY_GPU": "GPU output memory (inferd's Python models work in host memory)",
    "TRITONSERVER_MEMORY_CPU": "GPU output memory (inferd's Python models work in host memory)",
    "SharedMemory": "Triton's internal shared-memory manager",
    "serialize_byte_tensor": "Triton's BYTES wire encoding (BYTES tensors are object arrays)",
    "deserialize_bytes_tensor": "Triton's BYTES wire encoding (BYTES tensors are object arrays)",
}


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


class NotProvided(NotImplementedError, AttributeError):
    """A name of Triton's module that inferd does not provide (an AttributeError too, so that
    `hasattr(pb_utils, name)` is False)."""


def __getattr__(name: str) -> Any:
    what = _NOT_PROVIDED.get(name)
    if what is not None:
        raise NotProvided(
            f"triton_python_backend_utils.{name} is not provided by inferd's Python backend "
            f"({what}); see docs/python_backend.md"
        )
    raise AttributeError(
        f"triton_python_backend_utils has no attribute '{name}' in inferd's Python backend "
        "(see docs/python_backend.md for what it provides)"
    )
