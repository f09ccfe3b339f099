"""ONNX Runtime backend: one `InferenceSession` per device, shared by that device's instances.

Session options come from config `parameters` (the keys Triton's ONNX Runtime backend uses):
`intra_op_thread_count`, `inter_op_thread_count`, `execution_mode` (0 sequential, 1 parallel)
and inferd's `graph_optimization_level` (disable_all|basic|extended|all), or Triton's
`optimization { graph { level: -1|0|1 } }`. GPU instances use the CUDA provider on their device,
behind the TensorRT provider when Triton's `gpu_execution_accelerator` names "tensorrt".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from inferd.backends.autocomplete import (
    ModelTensor,
    complete_tensors,
    existing_model_file,
    model_path,
    name_backend,
)
from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.model_config import ModelConfig, int_parameter, string_parameter
from inferd.core.types import Array

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
_TRT_PRECISION_FLAGS = {"FP32": None, "FP16": "trt_fp16_enable", "INT8": "trt_int8_enable"}

logger = logging.getLogger(__name__)


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


def session_options(config: ModelConfig) -> Any:
    ort = _ort()
    options = ort.SessionOptions()
    intra = int_parameter(config, "intra_op_thread_count")
    if intra is not None:
        options.intra_op_num_threads = intra
    inter = int_parameter(config, "inter_op_thread_count")
    if inter is not None:
        options.inter_op_num_threads = inter
    if int_parameter(config, "execution_mode") == 1:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    level_name = string_parameter(config, "graph_optimization_level") or _TRITON_GRAPH_LEVELS.get(
        config.optimization.graph.level, "all"
    )
    if level_name not in _OPTIMIZATION_LEVELS:
        known = ", ".join(_OPTIMIZATION_LEVELS)
        raise InvalidArgument(f"graph_optimization_level must be one of {known}")
    options.graph_optimization_level = ort.GraphOptimizationLevel(_OPTIMIZATION_LEVELS[level_name])
    return options


def tensorrt_options(config: ModelConfig) -> dict[str, str] | None:
    """TensorRT provider options from Triton's `optimization { execution_accelerators {
    gpu_execution_accelerator: [{ name: "tensorrt" }] } }`; None when the config asks for none."""
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    for accelerator in accelerators:
        if accelerator.name == "tensorrt":
            pairs = (_tensorrt_option(k, v) for k, v in accelerator.parameters.items())
            return dict(pair for pair in pairs if pair is not None)
    return None


def _tensorrt_option(key: str, value: str) -> tuple[str, str] | None:
    """One of Triton's accelerator parameters as an ONNX Runtime TensorRT provider option."""
    if key.startswith("trt_"):  # ONNX Runtime's own option names pass through
        return key, value
    if key == "max_workspace_size_bytes":
        return "trt_max_workspace_size", value
    if key == "precision_mode" and value in _TRT_PRECISION_FLAGS:
        flag = _TRT_PRECISION_FLAGS[value]
        return (flag, "True") if flag else None
    raise InvalidArgument(f"unsupported tensorrt accelerator parameter {key}: {value}")


def _providers(device: Device, tensorrt: dict[str, str] | None) -> list[Any]:
    if device.kind is DeviceKind.CPU:
        return ["CPUExecutionProvider"]
    available = _ort().get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise Unavailable("KIND_GPU instance asked for, but ONNX Runtime has no CUDA provider here")
    cuda = [("CUDAExecutionProvider", {"device_id": device.index}), "CPUExecutionProvider"]
    if tensorrt is None:
        return cuda
    if "TensorrtExecutionProvider" not in available:
        logger.warning("the config asks for TensorRT, which this ONNX Runtime lacks: using CUDA")
        return cuda
    return [("TensorrtExecutionProvider", {**tensorrt, "device_id": device.index}), *cuda]


def _check_providers(session: Any, device: Device, tensorrt: dict[str, str] | None) -> None:
    """ONNX Runtime drops a provider whose libraries fail to load and runs on the next one, so a
    GPU instance whose CUDA libraries are missing would quietly run on the CPU."""
    if device.kind is DeviceKind.CPU:
        return
    started = session.get_providers()
    if "CUDAExecutionProvider" not in started:
        raise Unavailable(
            "ONNX Runtime could not start its CUDA provider (are the CUDA and cuDNN libraries "
            f"it was built for installed?): it started only {started}"
        )
    if tensorrt is not None and "TensorrtExecutionProvider" not in started:
        logger.warning("ONNX Runtime could not start its TensorRT provider: using CUDA")


class OnnxRuntimeBackend:
    name = "onnxruntime"
    platforms = ("onnxruntime_onnx",)
    default_model_filename = "model.onnx"
    supports_optional_inputs = True  # only inputs the graph has a default for (checked)
    supports_ragged = True  # see docs/ragged_batching.md

    def gpu_available(self) -> bool:
        return "CUDAExecutionProvider" in _ort().get_available_providers()

    def matches(self, version_path: Path) -> bool:
        return (version_path / self.default_model_filename).is_file()

    def complete_config(
        self, config: ModelConfig, version_path: Path, default_max_batch_size: int
    ) -> None:
        model_file = existing_model_file(config, version_path, self.default_model_filename)
        ort = _ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(
                str(model_file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise InvalidArgument(f"ONNX Runtime cannot read '{model_file.name}': {exc}") from exc
        name_backend(config, self.name, self.platforms[0])
        _complete_tensors(config, session, default_max_batch_size)

    def load(self, config: ModelConfig, version_path: Path) -> OnnxModel:
        return OnnxModel(
            model_path(config, version_path, self.default_model_filename),
            session_options(config),
            tensorrt_options(config),
        )


def _complete_tensors(config: ModelConfig, session: Any, default_batch: int) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    # Initializers listed as graph inputs ("overridable"): the usual way an ONNX graph gives
    # an input a default value, so a request may leave them out.
    initializers = session.get_overridable_initializers()
    complete_tensors(
        config,
        [_model_tensor(t) for t in inputs],
        [_model_tensor(t) for t in outputs],
        default_batch,
        "the ONNX model",
        defaulted=[_model_tensor(t) for t in initializers],
    )
    required = {t.name for t in inputs}
    needed = [t.name for t in config.input if t.optional and t.name in required]
    if needed:
        raise InvalidArgument(
            f"inputs {needed} are optional in the config, but the ONNX model has no default "
            "for them (ONNX Runtime runs only with every graph input that is not an "
            "initializer): remove 'optional: true'"
        )
    tensors = [*inputs, *initializers, *outputs]
    unsupported = [t.name for t in tensors if t.type in _UNSUPPORTED_ORT_TYPES]
    if unsupported:
        raise InvalidArgument(
            f"{unsupported}: BF16 tensors cannot cross ONNX Runtime's Python binding as numpy"
        )


def _model_tensor(tensor: Any) -> ModelTensor:
    # ONNX marks a dynamic axis with a symbolic name (str) or None.
    shape = tuple(d if isinstance(d, int) else None for d in tensor.shape)
    return ModelTensor(tensor.name, _CONFIG_TYPE_BY_ORT.get(tensor.type), shape, tensor.type)


class OnnxModel:
    """Sessions per device, created on first use; ONNX Runtime sessions accept concurrent `run`."""

    def __init__(
        self, model_file: Path, options: Any, tensorrt: dict[str, str] | None = None
    ) -> None:
        self._model_file = model_file
        self._options = options
        self._tensorrt = tensorrt
        self._sessions: dict[Device, Any] = {}
        self._lock = threading.Lock()

    def session(self, device: Device) -> Any:
        with self._lock:
            session = self._sessions.get(device)
            if session is None:
                try:
                    session = _ort().InferenceSession(
                        str(self._model_file),
                        self._options,
                        providers=_providers(device, self._tensorrt),
                    )
                except Unavailable:
                    raise
                except Exception as exc:
                    raise Unavailable(f"ONNX Runtime failed to create a session: {exc}") from exc
                _check_providers(session, device, self._tensorrt)
                self._sessions[device] = session
            return session

    def create_instance(self, device: Device, name: str) -> OnnxInstance:
        return OnnxInstance(self.session(device), runs_on_loop=device.kind is DeviceKind.CPU)

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()


class OnnxInstance:
    def __init__(self, session: Any, runs_on_loop: bool = False) -> None:
        self._session = session
        # On CPU a run may be made from the event loop's thread (base.py): a session's `run`
        # is thread-safe and calls nothing back.
        self.runs_on_loop = runs_on_loop
        graph_inputs = session.get_inputs()  # those without a default (initializers are not)
        self._string_inputs = {i.name for i in graph_inputs if i.type == "tensor(string)"}
        self._errors = _ort().capi.onnxruntime_pybind11_state

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        feed = dict(inputs)
        if self._string_inputs:  # most graphs have none
            for name in self._string_inputs.intersection(feed):
                feed[name] = _as_str_array(feed[name], name)
        try:
            results = self._session.run(list(output_names), feed)
        except self._errors.InvalidArgument as exc:
            # Shapes the config allows (-1 dims) that the graph itself rejects: the client's fault.
            raise InvalidArgument(f"ONNX Runtime rejected the inputs: {exc}") from exc
        return dict(zip(output_names, results, strict=True))

    def close(self) -> None:
        self._session = None


def _text(item: object) -> str:
    return item.decode() if isinstance(item, bytes) else str(item)


# Elementwise in numpy's C loop, written straight into the array ONNX Runtime takes (no list
# of str in between). BYTES from a frontend are bytes; other elements (an ONNX model's str
# output fed on by an ensemble, a Python model's values) take the general function.
_DECODE_UTF8: Final = np.frompyfunc(bytes.decode, 1, 1)
_AS_TEXT: Final = np.frompyfunc(_text, 1, 1)


def _as_str_array(array: Array, name: str) -> Array:
    """ONNX Runtime string tensors take str elements; BYTES inputs arrive as bytes."""
    text = np.empty(array.shape, dtype=np.object_)
    try:
        try:
            _DECODE_UTF8(array, out=text)
        except TypeError:  # an element that is not bytes
            _AS_TEXT(array, out=text)
    except UnicodeDecodeError as exc:
        # ONNX Runtime's Python API holds strings as UTF-8 text, so other bytes cannot reach it.
        raise InvalidArgument(
            f"BYTES input '{name}' holds an element that is not UTF-8 ({exc.reason}); "
            "ONNX Runtime string tensors take UTF-8 text only"
        ) from None
    return text
