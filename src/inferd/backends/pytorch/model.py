"""A loaded PyTorch model (one module per device, shared by that device's instances) and its
instances.

TorchScript, exported and eager modules may be called from several threads at once when no
autograd state is recorded (inference mode or no_grad), so N instances on one device cost N
threads, not N copies of the weights. Each GPU instance runs on a CUDA stream of its own so
that instances sharing a GPU overlap.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.backends.pytorch.calling import CallPlan, plan_for
from inferd.backends.pytorch.formats import ModelSource, load_module
from inferd.backends.pytorch.options import TorchOptions
from inferd.backends.pytorch.tensors import to_numpy, to_torch
from inferd.core.errors import Unavailable
from inferd.core.model_config import ModelConfig
from inferd.core.types import Array

if TYPE_CHECKING:
    import torch


def torch_device(device: Device) -> torch.device:
    """The torch device of an instance; `Unavailable` when this process cannot reach that GPU."""
    import torch

    if device.kind is DeviceKind.CPU:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise Unavailable(
            "KIND_GPU instance asked for, but torch sees no CUDA device here "
            "(a CPU-only torch build, or no GPU)"
        )
    count = torch.cuda.device_count()
    if device.index >= count:
        raise Unavailable(f"instance asks for GPU {device.index}, but torch sees {count} GPU(s)")
    return torch.device("cuda", device.index)


def _spend_readonly_warning() -> None:
    """Spend torch's once-per-process warning about wrapping read-only memory.

    Inputs decoded from a request body are read-only numpy views; they are handed to the model
    without a copy, and models only read their inputs.
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.from_numpy(np.frombuffer(b"\0", dtype=np.uint8))


class PyTorchModel:
    """Modules per device, each read from the model file when the first instance asks for it."""

    def __init__(self, source: ModelSource, config: ModelConfig, options: TorchOptions) -> None:
        self._source = source
        self._options = options
        self._config = config
        self._modules: dict[Device, Any] = {}
        self._plan: CallPlan | None = None
        self._lock = threading.Lock()
        _spend_readonly_warning()

    def _module(self, device: Device, target: torch.device) -> tuple[Any, CallPlan]:
        with self._lock:
            module = self._modules.get(device)
            if module is None:
                loaded = load_module(self._source, target)
                if self._plan is None:
                    self._plan = plan_for(self._config, loaded.arguments, loaded.by_keyword)
                module = loaded.module
                if self._options.torch_compile:
                    import torch

                    # Lazy: each new input shape compiles on its first batch.
                    module = torch.compile(module)
                self._modules[device] = module
            assert self._plan is not None  # set with the first module
            return module, self._plan

    def create_instance(self, device: Device, name: str) -> PyTorchInstance:
        target = torch_device(device)
        module, plan = self._module(device, target)
        return PyTorchInstance(module, target, plan, self._options.inference_mode)

    def close(self) -> None:
        with self._lock:
            self._modules.clear()


class PyTorchInstance:
    def __init__(
        self, module: Any, device: torch.device, plan: CallPlan, inference_mode: bool
    ) -> None:
        import torch

        self._module = module
        self._device = device
        self._plan = plan
        self._grad_mode: Callable[[], contextlib.AbstractContextManager[Any]] = (
            torch.inference_mode if inference_mode else torch.no_grad
        )
        self._stream = (
            torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
            if device.type == "cuda"
            else None
        )

    def _on_stream(self) -> contextlib.AbstractContextManager[Any]:
        if self._stream is None:
            return contextlib.nullcontext()
        import torch

        return torch.cuda.stream(self._stream)

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        with self._grad_mode(), self._on_stream():
            tensors = {name: to_torch(array, self._device) for name, array in inputs.items()}
            result = self._plan.call(self._module, tensors)
            outputs = self._plan.outputs(result, output_names)
            return {name: to_numpy(tensor) for name, tensor in outputs.items()}

    def close(self) -> None:
        self._module = None
        self._stream = None
