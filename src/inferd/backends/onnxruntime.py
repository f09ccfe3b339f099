"""ONNX Runtime backend: one `InferenceSession` per device, shared by that device's instances.

Session options come from config `parameters` (the keys Triton's ONNX Runtime backend uses):
`intra_op_thread_count`, `inter_op_thread_count`, `execution_mode` (0 sequential, 1 parallel)
and inferd's `graph_optimization_level` (disable_all|basic|extended|all), or Triton's
`optimization { graph { level: -1|0|1 } }`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.types import Array
from inferd.repository.config import string_parameter

_CONFIG_TYPE_BY_ORT = {
    "tensor(bool)": "TYPE_BOOL",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(float16)": "TYPE_FP16",
    "tensor(float)": "TYPE_FP32",
    "tensor(double)": "TYPE_FP64",
    "tensor(string)": "TYPE_STRING",
}
_UNSUPPORTED_ORT_TYPES = frozenset({"tensor(bfloat16)"})
_OPTIMIZATION_LEVELS = {"disable_all": 0, "basic": 1, "extended": 2, "all": 99}
# Triton's optimization.graph.level: -1 basic, 0 (unset) everything, 1 extended.
_TRITON_GRAPH_LEVELS = {-1: "basic", 0: "all", 1: "extended"}


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


def _model_file(config: Any, version_path: Path) -> Path:
    return version_path / (
        config.default_model_filename or OnnxRuntimeBackend.default_model_filename
    )


def _int_parameter(config: Any, key: str) -> int | None:
    value = string_parameter(config, key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"parameter '{key}' must be an integer, got '{value}'") from None


def session_options(config: Any) -> Any:
    ort = _ort()
    options = ort.SessionOptions()
    intra = _int_parameter(config, "intra_op_thread_count")
    if intra is not None:
        options.intra_op_num_threads = intra
    inter = _int_parameter(config, "inter_op_thread_count")
    if inter is not None:
        options.inter_op_num_threads = inter
    if _int_parameter(config, "execution_mode") == 1:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    level_name = string_parameter(config, "graph_optimization_level") or _TRITON_GRAPH_LEVELS.get(
        config.optimization.graph.level, "all"
    )
    if level_name not in _OPTIMIZATION_LEVELS:
        known = ", ".join(_OPTIMIZATION_LEVELS)
        raise InvalidArgument(f"graph_optimization_level must be one of {known}")
    options.graph_optimization_level = ort.GraphOptimizationLevel(_OPTIMIZATION_LEVELS[level_name])
    return options


def _providers(device: Device) -> list[Any]:
    if device.kind is DeviceKind.CPU:
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in _ort().get_available_providers():
        raise Unavailable("KIND_GPU instance asked for, but ONNX Runtime has no CUDA provider here")
    return [("CUDAExecutionProvider", {"device_id": device.index}), "CPUExecutionProvider"]


class OnnxRuntimeBackend:
    name = "onnxruntime"
    platforms = ("onnxruntime_onnx",)
    default_model_filename = "model.onnx"

    def gpu_available(self) -> bool:
        return "CUDAExecutionProvider" in _ort().get_available_providers()

    def matches(self, version_path: Path) -> bool:
        return (version_path / self.default_model_filename).is_file()

    def complete_config(self, config: Any, version_path: Path, default_max_batch_size: int) -> None:
        model_file = _model_file(config, version_path)
        if not model_file.is_file():
            raise InvalidArgument(f"model file '{model_file.name}' not found in version folder")
        ort = _ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(
                str(model_file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise InvalidArgument(f"ONNX Runtime cannot read '{model_file.name}': {exc}") from exc
        if not config.backend:
            config.backend = self.name
        if not config.platform:
            config.platform = self.platforms[0]
        _complete_tensors(
            config, session.get_inputs(), session.get_outputs(), default_max_batch_size
        )

    def load(self, config: Any, version_path: Path) -> OnnxModel:
        return OnnxModel(_model_file(config, version_path), session_options(config))


def _complete_tensors(
    config: Any, inputs: list[Any], outputs: list[Any], default_batch: int
) -> None:
    fill_inputs, fill_outputs = not config.input, not config.output
    infer_batching = fill_inputs and fill_outputs and config.max_batch_size == 0
    if (
        infer_batching
        and default_batch > 0
        and all(_dynamic_first_axis(t.shape) for t in [*inputs, *outputs])
    ):
        config.max_batch_size = default_batch
    skip = 1 if config.max_batch_size > 0 else 0
    if fill_inputs:
        for tensor in inputs:
            _add_tensor(config.input.add(), tensor, skip)
    if fill_outputs:
        for tensor in outputs:
            _add_tensor(config.output.add(), tensor, skip)
    unsupported = [t.name for t in [*inputs, *outputs] if t.type in _UNSUPPORTED_ORT_TYPES]
    if unsupported:
        raise InvalidArgument(
            f"{unsupported}: BF16 tensors cannot cross ONNX Runtime's Python binding as numpy"
        )
    _check_names("input", [t.name for t in config.input], [t.name for t in inputs])
    _check_names("output", [t.name for t in config.output], [t.name for t in outputs])


def _dynamic_first_axis(shape: list[Any]) -> bool:
    return len(shape) > 0 and not isinstance(shape[0], int)


def _add_tensor(entry: Any, tensor: Any, skip: int) -> None:
    config_type = _CONFIG_TYPE_BY_ORT.get(tensor.type)
    if config_type is None:
        raise InvalidArgument(f"'{tensor.name}' has unsupported ONNX type {tensor.type}")
    entry.name = tensor.name
    entry.data_type = config_type
    entry.dims.extend(d if isinstance(d, int) and d >= 0 else -1 for d in tensor.shape[skip:])


def _check_names(kind: str, configured: list[str], in_model: list[str]) -> None:
    unknown = sorted(set(configured) - set(in_model))
    if unknown:
        raise InvalidArgument(
            f"config {kind} {unknown} not in the ONNX model, whose {kind}s are {in_model}"
        )


class OnnxModel:
    """Sessions per device, created on first use; ONNX Runtime sessions accept concurrent `run`."""

    def __init__(self, model_file: Path, options: Any) -> None:
        self._model_file = model_file
        self._options = options
        self._sessions: dict[Device, Any] = {}
        self._lock = threading.Lock()

    def session(self, device: Device) -> Any:
        with self._lock:
            session = self._sessions.get(device)
            if session is None:
                try:
                    session = _ort().InferenceSession(
                        str(self._model_file), self._options, providers=_providers(device)
                    )
                except Unavailable:
                    raise
                except Exception as exc:
                    raise Unavailable(f"ONNX Runtime failed to create a session: {exc}") from exc
                self._sessions[device] = session
            return session

    def create_instance(self, device: Device, name: str) -> OnnxInstance:
        return OnnxInstance(self.session(device))

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()


class OnnxInstance:
    def __init__(self, session: Any) -> None:
        self._session = session
        self._string_inputs = {i.name for i in session.get_inputs() if i.type == "tensor(string)"}

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        feed = dict(inputs)
        for name in self._string_inputs.intersection(feed):
            feed[name] = _as_str_array(feed[name], name)
        try:
            results = self._session.run(list(output_names), feed)
        except _ort().capi.onnxruntime_pybind11_state.InvalidArgument as exc:
            # Shapes the config allows (-1 dims) that the graph itself rejects: the client's fault.
            raise InvalidArgument(f"ONNX Runtime rejected the inputs: {exc}") from exc
        return dict(zip(output_names, results, strict=True))

    def close(self) -> None:
        self._session = None


def _as_str_array(array: Array, name: str) -> Array:
    """ONNX Runtime string tensors take str elements; BYTES inputs arrive as bytes."""
    try:
        flat = [
            item.decode() if isinstance(item, bytes) else str(item) for item in array.reshape(-1)
        ]
    except UnicodeDecodeError as exc:
        # ONNX Runtime's Python API holds strings as UTF-8 text, so other bytes cannot reach it.
        raise InvalidArgument(
            f"BYTES input '{name}' holds an element that is not UTF-8 ({exc.reason}); "
            "ONNX Runtime string tensors take UTF-8 text only"
        ) from None
    return np.array(flat, dtype=np.object_).reshape(array.shape)
