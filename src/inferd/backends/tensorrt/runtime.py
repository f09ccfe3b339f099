"""TensorRT engines per GPU and the instances that run them, with device memory through torch.

Each device gets one deserialized `ICudaEngine`, shared by that device's instances; each
instance owns one `IExecutionContext` and one CUDA stream, so instances run concurrently.
Per batch: inputs are staged in pinned host memory and copied to the device without blocking,
the engine runs on the instance's stream, outputs come back into pinned memory that the
returned arrays view, and the stream is synchronized once.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.backends.tensorrt.plan import PlanSignature, describe_engine
from inferd.core.datatypes import from_config_datatype, numpy_dtype
from inferd.core.errors import Internal, InvalidArgument, Unavailable, Unsupported
from inferd.core.types import Array


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise Unavailable(
            f"the TensorRT backend needs the 'tensorrt' package ({exc}); "
            "install it with: pip install 'inferd[tensorrt]'"
        ) from None
    return tensorrt


def import_torch() -> Any:
    """torch with CUDA: it allocates device and pinned memory and owns the streams."""
    try:
        import torch
    except ImportError as exc:
        raise Unavailable(
            f"the TensorRT backend needs torch for device memory ({exc}); "
            "install it with: pip install 'inferd[tensorrt]'"
        ) from None
    if not torch.cuda.is_available():
        raise Unavailable("TensorRT plans need a CUDA GPU, and none is visible to this process")
    return torch


def cuda_available() -> bool:
    try:
        import_tensorrt()
        import_torch()
    except Unavailable:
        return False
    return True


@functools.cache
def _trt_logger() -> Any:
    """One logger for the process: TensorRT keeps the first logger it is given."""
    trt = import_tensorrt()
    return trt.Logger(trt.Logger.WARNING)


def deserialize(plan: bytes, device_index: int) -> tuple[Any, Any]:
    """(runtime, engine) for one GPU; the runtime must outlive the engine."""
    trt, torch = import_tensorrt(), import_torch()
    if not 0 <= device_index < torch.cuda.device_count():
        raise Unavailable(
            f"GPU {device_index} asked for, but this process sees "
            f"{torch.cuda.device_count()} GPU(s)"
        )
    with torch.cuda.device(device_index):
        runtime = trt.Runtime(_trt_logger())
        engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise Unavailable(
            "TensorRT could not deserialize the plan: a plan only runs with the TensorRT "
            "version and the GPU model it was built for (the server log has TensorRT's reason)"
        )
    return runtime, engine


class PlanModel:
    """The plan's bytes and one engine per GPU, deserialized when its first instance starts."""

    def __init__(self, model_file: Path) -> None:
        self._plan = model_file.read_bytes()
        self._engines: dict[int, tuple[Any, Any, PlanSignature]] = {}
        self._lock = threading.Lock()

    def engine(self, device_index: int) -> tuple[Any, PlanSignature]:
        with self._lock:
            found = self._engines.get(device_index)
            if found is None:
                runtime, engine = deserialize(self._plan, device_index)
                found = (runtime, engine, describe_engine(engine, import_tensorrt()))
                self._engines[device_index] = found
            return found[1], found[2]

    def create_instance(self, device: Device, name: str) -> PlanInstance:
        if device.kind is not DeviceKind.GPU:
            raise Unsupported(f"instance '{name}': TensorRT plans run on GPU instances only")
        engine, signature = self.engine(device.index)
        return PlanInstance(engine, signature, device.index, name)

    def close(self) -> None:
        with self._lock:
            self._engines.clear()


class PlanInstance:
    def __init__(self, engine: Any, signature: PlanSignature, device_index: int, name: str) -> None:
        torch = import_torch()
        self._torch = torch
        self._device = torch.device("cuda", device_index)
        self._signature = signature
        self._dtypes = {
            t.name: numpy_dtype(from_config_datatype(t.config_type)) for t in signature.tensors
        }
        self._stream = torch.cuda.Stream(device=self._device)
        with torch.cuda.device(self._device):
            self._context = engine.create_execution_context()
        if self._context is None:
            raise Unavailable(f"instance '{name}': TensorRT could not create an execution context")
        self._context.name = name
        self._profile = 0

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        torch, stream = self._torch, self._stream
        profile = self._signature.profile_for({n: a.shape for n, a in inputs.items()})
        with torch.cuda.device(self._device), torch.cuda.stream(stream):
            if profile != self._profile:
                self._context.set_optimization_profile_async(profile, stream.cuda_stream)
                self._profile = profile
            # Device buffers must stay referenced until the stream has finished with them.
            device_buffers = [self._bind_input(name, array) for name, array in inputs.items()]
            shapes = {t.name: self._output_shape(t.name) for t in self._signature.outputs}
            device_outputs = {n: self._bind_output(n, shape) for n, shape in shapes.items()}
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise Internal("TensorRT failed to enqueue the batch (the server log says why)")
            host = {name: self._to_host(device_outputs[name]) for name in output_names}
            stream.synchronize()
        del device_buffers
        return {
            name: buffer.numpy().view(self._dtypes[name]).reshape(shapes[name])
            for name, buffer in host.items()
        }

    def _bind_input(self, name: str, array: Array) -> Any:
        if not self._context.set_input_shape(name, array.shape):
            raise InvalidArgument(f"TensorRT rejected shape {list(array.shape)} for '{name}'")
        torch = self._torch
        # Staged through pinned memory so that the copy to the device does not block the CPU;
        # the caching host allocator keeps the block until the copy has run.
        staging = torch.empty(max(array.nbytes, 1), dtype=torch.uint8, pin_memory=True)
        np.copyto(staging.numpy()[: array.nbytes].view(array.dtype).reshape(array.shape), array)
        device = torch.empty(staging.numel(), dtype=torch.uint8, device=self._device)
        device.copy_(staging, non_blocking=True)
        self._context.set_tensor_address(name, device.data_ptr())
        return device

    def _output_shape(self, name: str) -> tuple[int, ...]:
        shape = tuple(self._context.get_tensor_shape(name))
        if any(size < 0 for size in shape):
            raise Unsupported(f"output '{name}' has a data-dependent shape {list(shape)}")
        return shape

    def _bind_output(self, name: str, shape: tuple[int, ...]) -> Any:
        nbytes = int(np.prod(shape, dtype=np.int64)) * self._dtypes[name].itemsize
        device = self._torch.empty(max(nbytes, 1), dtype=self._torch.uint8, device=self._device)
        self._context.set_tensor_address(name, device.data_ptr())
        return device[:nbytes]

    def _to_host(self, device: Any) -> Any:
        torch = self._torch
        host = torch.empty(device.numel(), dtype=torch.uint8, pin_memory=True)
        host.copy_(device, non_blocking=True)
        return host

    def close(self) -> None:
        self._stream.synchronize()
        self._context = None
